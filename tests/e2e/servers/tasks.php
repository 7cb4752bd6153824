<?php
// Task workers (task_worker_num, SURGE_TASKS, default 2) beside worker_num (SURGE_WORKERS,
// default 2), in the shape of the article that proxies Laravel broadcasts: a message hands a
// task to the task workers with task(); onTask runs there and returns a result, which comes
// back to onFinish in the worker that sent it. Messages are "cmd" or "cmd:ARG".
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$settings = getenv('SURGE_SETTINGS') ? json_decode(getenv('SURGE_SETTINGS'), true) : [];
$server->set($settings + [
    'worker_num' => (int) (getenv('SURGE_WORKERS') ?: 2),
    'task_worker_num' => (int) (getenv('SURGE_TASKS') ?: 2),
    'log_level' => 'info',
]);

$burst_results = 0;

function out(string $line): void { echo $line . "\n"; }

/** Says when it is freed. */
class Announce
{
    public function __construct(private string $text) {}

    public function __destruct()
    {
        out($this->text);
    }
}

/** Cannot be unserialized in a task worker (a class that needs what only the workers boot). */
class WorkersOnly
{
    public function __wakeup(): void
    {
        if ($GLOBALS['server']->taskworker) {
            throw new RuntimeException('cannot wake in a task worker');
        }
    }
}

if (isset($settings['redis'])) {
    // Before start(): the workers subscribe, the task workers do not (they have no connections).
    $server->subscribe(['news']);
    $server->on('redis', fn($s, $channel, $payload) => out("redis in worker {$s->worker_id}: $channel $payload"));
}

if (getenv('SURGE_TIMER')) {
    // Before start(): every worker and task worker runs it.
    $server->after(50, fn() => out("timer in worker {$server->worker_id}"));
}

$server->on('workerStart', fn($s, $id) => out("workerStart $id taskworker=" . json_encode($s->taskworker) . " pid=" . getmypid()));
$server->on('workerStop', fn($s, $id) => out("workerStop $id"));
$server->on('shutdown', fn($s) => out('shutdown'));

$server->on('message', function ($s, $frame) {
    [$cmd, $arg] = explode(':', $frame->data, 2) + ['', ''];
    $task = ['cmd' => $cmd, 'arg' => $arg, 'fd' => $frame->fd, 'nested' => ['ü' => [1.5, null, true]]];
    $reply = match ($cmd) {
        // The data as a string, not serialized: it arrives as the same bytes.
        'raw' => $s->task("raw\0" . $frame->fd),
        'big' => $s->task(['cmd' => 'big', 'fd' => $frame->fd, 'data' => str_repeat($arg, 1 << 20)]),
        // A named argument.
        'own' => $s->task($task, finish_callback: function ($s, $taskId, $result) {
            $s->push($result['fd'], json_encode(['own' => $taskId, 'result' => $result]));
        }),
        // A finish callback for a task that returns nothing: it never runs, and is let go of.
        'ownsilent' => $s->task(['cmd' => 'quick'], -1, (function () {
            $held = new Announce('the finish callback of a silent task is freed');
            return function () use ($held) {
                out('a finish callback ran for a silent task');
            };
        })()),
        // A task whose data the task worker cannot unserialize: it never runs, and its finish
        // callback is let go of.
        'unwakeable' => $s->task(new WorkersOnly(), -1, (function () {
            $held = new Announce('the finish callback of an unreadable task is freed');
            return function () use ($held) {
                out('a finish callback ran for an unreadable task');
            };
        })()),
        // A task that holds its task worker until the file $arg exists, with a finish callback.
        'ownhold' => $s->task(['cmd' => 'hold', 'arg' => $arg], -1, (function () {
            $held = new Announce('the finish callback of a lost task is freed');
            return function () use ($held) {
                out('a finish callback ran for a lost task');
            };
        })()),
        // Waits up to 60 s for task "$cmd,$file": what came, and after how long.
        'waitlong' => (function () use ($s, $arg) {
            [$cmd, $file] = explode(',', $arg) + ['', ''];
            $started = microtime(true);
            $result = $s->taskwait(['cmd' => $cmd, 'arg' => $file], 60.0);
            out('waitlong got ' . ($result === false ? 'false' : 'a result'));
            return ['result' => $result, 'seconds' => microtime(true) - $started];
        })(),
        // Waits for the result here: no finish callback runs for it.
        'wait' => $s->taskwait(['cmd' => $arg ?: 'info', 'fd' => $frame->fd, 'nested' => $task['nested']], 2.0),
        'waitshort' => $s->taskwait(['cmd' => 'slow', 'fd' => $frame->fd], 0.1),
        // Three tasks queued at once, waited for up to $arg seconds: the results under their keys.
        'multi' => $s->taskWaitMulti([
            'first' => ['cmd' => 'info'] + $task,
            7 => "raw\0" . $frame->fd,
            'slow' => ['cmd' => 'slow', 'fd' => $frame->fd],
        ], (float) $arg),
        'multinone' => $s->taskWaitMulti([]),
        'who' => $frame->fd,
        // A push to client $arg (another worker's, say), then a task that pushes to it too:
        // the task's push must come second.
        'pushthentask' => (function () use ($s, $arg) {
            $s->push((int) $arg, 'before the task');
            return $s->task(['cmd' => 'pushto', 'fd' => (int) $arg]);
        })(),
        // serialize() refuses a closure: its exception reaches the caller.
        'closure' => (function () use ($s) {
            try {
                return $s->task(fn() => 1);
            } catch (Exception $e) {
                return get_class($e) . ': ' . $e->getMessage();
            }
        })(),
        // Holds the one task worker until the file $arg exists, then queues 8,000-byte tasks
        // until task() returns false (after the queue stayed full for 5 s).
        'flood' => (function () use ($s, $task, $arg) {
            $s->task(['cmd' => 'hold', 'arg' => $arg] + $task);
            $queued = 0;
            $pad = str_repeat('x', 8000);
            while ($queued < 100000) {
                $started = microtime(true);
                if ($s->task(['cmd' => 'quick', 'pad' => $pad]) === false) {
                    return ['queued' => $queued, 'false_after' => microtime(true) - $started];
                }
                $queued++;
            }
            return ['queued' => $queued];
        })(),
        // $arg tasks at once, each with a callback that counts its result: how many task()
        // calls returned false, and (burstresults) how many results came.
        'burst' => count(array_filter(array_map(
            fn() => $s->task(['cmd' => 'burst', 'fd' => $frame->fd], -1, function () { $GLOBALS['burst_results']++; }),
            range(1, (int) $arg),
        ), fn($id) => $id === false)),
        'burstresults' => $GLOBALS['burst_results'],
        // $arg tasks of 50 ms each, in order.
        'ticks' => array_map(fn($i) => $s->task(['cmd' => 'tick', 'arg' => $i, 'fd' => $frame->fd]), range(1, (int) $arg)),
        // The same, of 500 ms each.
        'slowticks' => array_map(fn($i) => $s->task(['cmd' => 'tick', 'arg' => $i, 'ms' => 500, 'fd' => $frame->fd]), range(1, (int) $arg)),
        // A task that ends its task worker with a fatal error, and three queued behind it.
        'fatal' => [$s->task(['cmd' => 'fatal', 'fd' => $frame->fd]),
                    ...array_map(fn($i) => $s->task(['cmd' => 'tick', 'arg' => $i, 'fd' => $frame->fd]), range(1, 3))],
        'die' => exit(4),
        // To the pipeMessage callback of worker or task worker $arg.
        'topipe' => $s->sendMessage(['fd' => $frame->fd, 'text' => 'to a task worker'], (int) $arg),
        'dst' => (function () use ($s, $task) {
            try {
                return $s->task($task, 1);
            } catch (Surge\Exception $e) {
                return $e->getMessage();
            }
        })(),
        default => $s->task($task),
    };
    $s->push($frame->fd, json_encode(['task' => $reply, 'worker' => $s->worker_id, 'pid' => getmypid()]));
});

$server->on('task', function ($s, $taskId, $srcWorkerId, $data) {
    if (is_string($data)) {
        return ['cmd' => 'raw', 'fd' => (int) explode("\0", $data)[1], 'data' => $data];
    }
    $result = ['cmd' => $data['cmd'], 'fd' => $data['fd'], 'task_id' => $taskId, 'src' => $srcWorkerId,
               'worker_id' => $s->worker_id, 'taskworker' => $s->taskworker, 'pid' => getmypid()];
    switch ($data['cmd']) {
        case 'info':
            return $result + ['nested' => $data['nested']];
        case 'pushto':
            $s->push($data['fd'], 'from the task');
            return null;
        case 'slow':
            usleep(500000);
            return $result;
        case 'big':
            return $result + ['md5' => md5($data['data']), 'length' => strlen($data['data'])];
        case 'all':
            // The article's onTask: a PHP loop over every connection, from the task worker.
            $n = 0;
            foreach ($s->connections as $fd) {
                $n += $s->push($fd, "to all: {$data['arg']}") ? 1 : 0;
            }
            return $result + ['pushed' => $n];
        case 'finish':
            $s->finish($result + ['by' => 'finish()']);
            try {
                $s->finish($result);
            } catch (Surge\Exception $e) {
                out("second finish(): {$e->getMessage()}");
            }
            return ['ignored' => true];
        case 'nested':
            try {
                $s->task('from a task worker');
            } catch (Surge\Exception $e) {
                return $result + ['error' => $e->getMessage()];
            }
            return $result;
        case 'hold':
            out("holding task $taskId in pid " . getmypid());
            while (!file_exists($data['arg'])) {
                usleep(10000);
            }
            return $result;
        case 'quick':
            return null;
        case 'closureresult':
            // A result serialize() refuses.
            return fn () => 1;
        case 'fatal':
            trigger_error("a fatal error on purpose", E_USER_ERROR);
        case 'tick':
            usleep(1000 * ($data['ms'] ?? 50));
            out("tick {$data['arg']} ran in pid " . getmypid());
            return null;
        case 'pipe':
            // To the sending worker's pipeMessage callback.
            return $result + ['sent' => $s->sendMessage(['fd' => $data['fd'], 'text' => 'from a task worker'], $srcWorkerId)];
        case 'publish':
            $published = $s->redisPublish('news', "from task worker {$s->worker_id}");
            // With a file name: the task goes on working (until the file exists) after it.
            while ($data['arg'] !== '' && !file_exists($data['arg'])) {
                usleep(10000);
            }
            return $result + ['published' => $published];
        case 'silent':
            out("silent task $taskId ran");
            return null;
        case 'exit':
            exit(3);
    }
    return $result;
});

$server->on('pipeMessage', function ($s, $src, $message) {
    $s->push($message['fd'], json_encode(['piped' => $message['text'], 'src' => $src, 'worker' => $s->worker_id]));
});

$server->on('finish', function ($s, $taskId, $result) {
    out("finish $taskId {$result['cmd']} in worker {$s->worker_id}");
    $s->push($result['fd'], json_encode(['finish' => $taskId, 'result' => $result, 'worker' => $s->worker_id]));
});
$server->start();
