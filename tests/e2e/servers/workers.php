<?php
// worker_num 2 (or SURGE_WORKERS): every callback says which worker ran it, and text commands
// reach connections of the other worker: "cmd:ARG1:ARG2".
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$settings = getenv('SURGE_SETTINGS') ? json_decode(getenv('SURGE_SETTINGS'), true) : [];
$server->set($settings + ['worker_num' => (int) (getenv('SURGE_WORKERS') ?: 2), 'log_level' => 'info']);

if (getenv('SURGE_SUBSCRIBE')) {
    // Before start(): every worker subscribes.
    $server->subscribe(explode(',', getenv('SURGE_SUBSCRIBE')));
}

if (getenv('SURGE_TIMER')) {
    // Before start(): every worker runs it.
    $server->after(50, fn() => out("timer in worker {$server->worker_id}"));
}

$table = new Surge\Table(64);
$table->column('worker', Surge\Table::TYPE_INT);
$table->create();

// One write per line: three processes write to the same output.
function out(string $line): void { echo $line . "\n"; }

$server->on('start', fn($s) => out("start worker_id={$s->worker_id} master={$s->master_pid} pid=" . getmypid()));
$server->on('workerStart', function ($s, $id) {
    // Read here, after the fork: a worker started by reload() reads it anew (code included here
    // would be too); what the script read before start() is the master's.
    $GLOBALS['version'] = getenv('SURGE_VERSION_FILE') ? file_get_contents(getenv('SURGE_VERSION_FILE')) : null;
    if ($GLOBALS['version'] === 'broken-slowly') {
        usleep(500_000);  // a boot that takes a while before it fails
    }
    if ($GLOBALS['version'] === 'broken-throws') {
        throw new RuntimeException('a broken deploy');  // as a Laravel app's boot would
    }
    if (str_starts_with((string) $GLOBALS['version'], 'broken')) {
        trigger_error('a broken deploy', E_USER_ERROR);
    }
    if (($marker = getenv('SURGE_SLOW_START_FILE')) && file_exists($marker)) {
        // A replacement stuck in its boot (a database that does not answer).
        out("workerStart $id stuck pid=" . getmypid());
        sleep(120);
    }
    if ($ms = (int) getenv('SURGE_START_MS')) {
        // A slow boot (a Laravel app's, say).
        out("workerStart $id begins");
        usleep(1000 * $ms);
    }
    if ($seconds = (int) getenv('SURGE_HELPER_SECONDS')) {
        // A helper process of the app's, forked without exec (a sidecar): it lives on.
        if (pcntl_fork() === 0) {
            sleep($seconds);
            pcntl_exec('/bin/true');
        }
    }
    if (getenv('SURGE_GREET') && $id > 0) {
        // The workers before this one already run their engine.
        out("greeted from workerStart $id: " . var_export($s->sendMessage("hello from workerStart $id", 0), true));
    }
    out("workerStart $id worker_id={$s->worker_id} pid={$s->worker_pid} master={$s->master_pid}");
});
$server->on('workerStop', function ($s, $id) {
    out("workerStop $id");
    // A stop that takes a while, for signals that come meanwhile.
    usleep(1000 * (int) getenv('SURGE_STOP_MS'));
});
$server->on('shutdown', fn($s) => out("shutdown in " . getmypid()));
// In the master, for a worker that died: the rows its close callbacks would have deleted.
$server->on('workerError', function ($s, $id, $pid, $code, $signal) use ($table) {
    $gone = array_keys(array_filter(iterator_to_array($table), fn($row) => $row['worker'] === $id));
    array_map([$table, 'del'], $gone);
    out("workerError $id pid=$pid code=$code signal=$signal in " . getmypid() . ", rows left " . count($table));
});
$server->on('open', function ($s, $req) use ($table) {
    $table->set((string) $req->fd, ['worker' => $s->worker_id]);
    out("open {$req->fd} worker {$s->worker_id}");
});
$server->on('close', fn($s, $fd) => out("close $fd worker {$s->worker_id}"));
$server->on('pipeMessage', function ($s, $src, $message) {
    if (is_string($message)) {
        out("pipeMessage in worker {$s->worker_id} from $src: $message");
        return;
    }
    $s->push($message['fd'], "piped to worker {$s->worker_id} from $src: {$message['text']}");
});
$server->on('message', function ($s, $frame) use ($table) {
    [$cmd, $a, $b] = explode(':', $frame->data, 3) + ['', '', ''];
    $reply = match ($cmd) {
        'who' => ['worker' => $s->worker_id, 'fd' => $frame->fd, 'pid' => getmypid(), 'version' => $GLOBALS['version']],
        'reload' => $s->reload(),
        // The chat room of the articles: a PHP loop over every connection.
        'chat' => (function () use ($s, $frame, $a) {
            $n = 0;
            foreach ($s->connections as $fd) {
                $n += $s->push($fd, "chat from {$frame->fd}: $a") ? 1 : 0;
            }
            return ['pushed' => $n, 'count' => count($s->connections)];
        })(),
        // The loop of Swoole's documentation: every fd checked before its push.
        'estchat' => (function () use ($s, $frame, $a) {
            $pushed = $skipped = 0;
            foreach ($s->connections as $fd) {
                if ($s->isEstablished($fd) && $s->exist($fd)) {
                    $pushed += $s->push($fd, "chat from {$frame->fd}: $a") ? 1 : 0;
                } else {
                    $skipped++;
                }
            }
            return ['pushed' => $pushed, 'skipped' => $skipped];
        })(),
        // fd $a listed, then disconnected by this worker: is it still established?
        'kickcheck' => (function () use ($s, $a) {
            $listed = in_array((int) $a, iterator_to_array($s->connections), true);
            $s->disconnect((int) $a, 4000, 'kicked');
            return ['listed' => $listed, 'established' => $s->isEstablished((int) $a)];
        })(),
        'probe' => ['exist' => $s->exist((int) $a), 'established' => $s->isEstablished((int) $a),
                    'info' => $s->getClientInfo((int) $a), 'push' => $s->push((int) $a, "to $a from worker {$s->worker_id}"),
                    'table' => $table->get($a, 'worker')],
        'kick' => $s->disconnect((int) $a, 4000, 'kicked'),
        // $b numbered pushes to fd $a, then its close: they must come first.
        'pushkick' => (function () use ($s, $a, $b) {
            for ($i = 1; $i <= (int) $b; $i++) {
                $s->push((int) $a, "push $i");
            }
            return $s->disconnect((int) $a, 4000, 'after the pushes');
        })(),
        // A push to fd $a, then a callback that goes on (a task reporting its progress) until
        // that client says it has it ('got', to any worker): true if it did within 10 s.
        'pushwait' => (function () use ($s, $a, $table) {
            $table->del('got');
            $s->push((int) $a, 'while you wait');
            for ($i = 0; $i < 1000 && !$table->exists('got'); $i++) {
                usleep(10000);
            }
            return $table->exists('got');
        })(),
        'got' => $table->set('got', ['worker' => $s->worker_id]),
        // A push to fd $a, then a Laravel broadcast on channel $b through Redis, which must not
        // overtake it; the callback goes on a while, so that what writes the push in time is
        // the publish's flush, not the callback's end.
        'pushredis' => (function () use ($s, $a, $b) {
            $s->push((int) $a, 'pushed first');
            $s->redisPublish($b, json_encode(['event' => 'Then', 'data' => ['through' => 'redis'], 'socket' => null]));
            usleep(200000);
            return true;
        })(),
        'join' => $s->join((int) $a, $b),
        'leave' => $s->leave((int) $a, $b),
        'publish' => $s->publish($a, $b),
        // $b MiB to channel $a: every other worker reads it from the bus.
        'bigpublish' => $s->publish($a, str_repeat('b', (int) $b << 20)),
        'channels' => ['all' => $s->channels(), 'members' => $s->members($a), 'of' => $s->channelsOf((int) $b)],
        'broadcast' => $s->broadcast($a, [$frame->fd]),
        'stats' => $s->stats(),
        'socket' => $s->socketId((int) $a),
        // To worker $a's pipeMessage callback, which answers this client through the bus.
        'send' => (function () use ($s, $frame, $a, $b) {
            try {
                return $s->sendMessage(['fd' => $frame->fd, 'text' => $b], (int) $a);
            } catch (Surge\Exception $e) {
                return $e->getMessage();
            }
        })(),
        'sendraw' => $s->sendMessage($b, (int) $a),
        'exit' => exit(3),
        // A callback that does not return (a hung query): only a kill ends this process.
        'hang' => sleep(3600),
        'shutdown' => $s->shutdown(),
        default => "unknown $cmd",
    };
    $s->push($frame->fd, json_encode($reply));
});
// GET /push?fd=N&text=T pushes T to fd N, then answers with this worker's id; with &after=MS the
// callback goes on that long after its answer, so that what writes a push to another worker's
// connection in time is the answer's flush, not the callback's end.
$server->on('request', function ($req, $resp) use ($server) {
    $server->push((int) $req->get['fd'], $req->get['text']);
    $resp->end((string) $server->worker_id);
    usleep((int) ($req->get['after'] ?? 0) * 1000);
});
if (getenv('SURGE_CHILD')) {
    // A process of the script's own, which ends while the workers serve.
    $child = proc_open(['sh', '-c', 'exit 7'], [], $pipes);
}
register_shutdown_function(fn() => out('shutdown function in ' . getmypid()));
$server->start();
out("start() returned in " . getmypid());
if (isset($child)) {
    out('child status ' . proc_close($child));
}
