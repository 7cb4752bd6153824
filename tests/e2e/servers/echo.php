<?php
// Echoes every message back, logs every callback to stdout, and exposes the server's methods
// through small text commands so tests can drive each one.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$settings = getenv('SURGE_SETTINGS') ? json_decode(getenv('SURGE_SETTINGS'), true) : [];
$server->set($settings + ['log_level' => 'debug']);

function out(string $line): void { echo $line, "\n"; }

if (getenv('SURGE_THROWING_ERRORS')) {
    // As Laravel's error handler does: every warning becomes an exception.
    set_error_handler(function (int $level, string $message, string $file, int $line) {
        throw new ErrorException($message, 0, $level, $file, $line);
    });
}

$server->on('start', fn($s) => out("start {$s->port}"));
$server->on('workerStart', fn($s, $id) => out("workerStart $id"));
$server->on('open', function ($s, $req) {
    out("open {$req->fd} " . json_encode(['get' => $req->get, 'path' => $req->server['request_uri'], 'ua' => $req->header['user-agent'] ?? null]));
});
$server->on('message', function ($s, $frame) {
    [$fd, $d] = [$frame->fd, $frame->data];
    out("message {$frame->fd} " . (strlen($d) > 64 ? strlen($d) . ' bytes' : $d));
    if (str_starts_with($d, 'cmd:')) {
        [, $cmd, $arg] = explode(':', $d, 3) + [2 => ''];
        try {
            $r = command($s, $frame, $cmd, $arg);
        } catch (Surge\Exception $e) {
            $r = ['exception' => get_class($e), 'message' => $e->getMessage()];
        }
        $s->push($fd, json_encode($r));
        return;
    }
    $s->push($frame->fd, $d, $frame->opcode);
});

function command($s, $frame, string $cmd, string $arg): mixed
{
    return match ($cmd) {
        'info' => $s->getClientInfo($frame->fd),
        'stats' => $s->stats(),
        'conns' => ['count' => count($s->connections), 'fds' => iterator_to_array($s->connections, false)],
        'disconnect' => $s->disconnect($frame->fd, 4000, $arg),
        'close' => $s->close($frame->fd),
        'push' => [$s->push((int) $arg, "to $arg"), $s->exist((int) $arg), $s->isEstablished((int) $arg)],
        'binary' => $s->push($frame->fd, "\x00\xffraw", WEBSOCKET_OPCODE_BINARY),
        'numbers' => array_map(fn($n) => $s->push($frame->fd, $n), [42, 1.5, 0.1 + 0.2, 1e20, -INF, NAN]),
        'throw' => throw new RuntimeException("thrown on purpose"),
        'exit' => exit(3),
        'fatal' => trigger_error('fatal on purpose', E_USER_ERROR),
        // PHP's allocator reports this one itself (memory_limit is 128M under php -n).
        'oom' => strlen(str_repeat('x', 1 << 30)),
        'shutdown' => $s->shutdown(),
        'sleep' => slept((int) $arg),
        // A child of the callback's own that ends at once (the parent waits for it).
        'fork' => ($pid = pcntl_fork()) === 0 ? exit(0) : pcntl_waitpid($pid, $status) === $pid,
        'after' => $s->after((int) $arg, fn() => $s->push($frame->fd, "after $arg")),
        'code' => $s->disconnect($frame->fd, (int) $arg),
        'kick' => $s->disconnect((int) $arg, 4009, 'kicked'),
        'set' => $s->set(json_decode($arg, true)),
        'broadcast' => $s->broadcast($arg),
        // The articles' loop: $arg MiB to every connection, one push each.
        'loop' => (function () use ($s, $arg) {
            $message = random_bytes((int) $arg << 20);
            $pushed = 0;
            foreach ($s->connections as $fd) {
                $pushed += (int) $s->push($fd, $message, WEBSOCKET_OPCODE_BINARY);
            }
            return $pushed;
        })(),
        'pusher-trigger' => $s->pusherTrigger('news', 'event', $arg),
        'keep' => count(keep($frame)),
        'kept' => array_map(fn($f) => $f->data, keep()),
        'weak' => (bool) ($GLOBALS['weak'] = WeakReference::create($frame)),
        'weak-gone' => $GLOBALS['weak']->get() === null,
        'tag' => (bool) @($frame->tag = $arg),
        'tagged' => isset($frame->tag),
        // Frame properties are plain public properties: a callback may overwrite, unset or
        // reference them; the next frame still carries its own message.
        'scribble' => [$frame->fd = -1, $frame->opcode = 'x', $GLOBALS['held'] = &$frame->data, $frame->data = 'overwritten', $frame->finish = null],
        'frame' => [$frame->fd, $frame->data, $frame->opcode, $frame->finish],
        'held' => $GLOBALS['held'],
        'vars' => get_object_vars($frame),
        'sequence' => [$s->push($frame->fd, 'one'), $s->broadcast('two'), $s->push($frame->fd, 'three')],
        'last-words' => [$s->push($frame->fd, $arg), $s->disconnect($frame->fd, 4001, 'said')],
        'big' => $s->push($frame->fd, str_repeat("\xab", (int) $arg), WEBSOCKET_OPCODE_BINARY),
        // Callbacks whose captured object does something when Surge lets go of them: after the
        // timer ran, when the timer is cleared, when the callback is replaced.
        'fatal-later' => (bool) $s->after(10, holding(new OnDestroy(fn() => trigger_error('fatal in a destructor', E_USER_ERROR)))),
        'clear-held' => $s->clearTimer($s->after(60000, holding(new OnDestroy(fn() => $s->after(1, fn() => $s->push($frame->fd, 'timer from a destructor')))))),
        'replace-held' => [
            $s->on('close', holding(new OnDestroy(fn() => $s->on('close', fn($s, $fd) => out("close $fd, replaced in a destructor"))))),
            $s->on('close', fn() => null),
        ],
        default => "unknown $cmd",
    };
}
// The frames a callback held on to.
function keep(?object $frame = null): array
{
    static $kept = [];
    if ($frame) {
        $kept[] = $frame;
    }
    return $kept;
}

// Runs $then when it is destroyed.
class OnDestroy
{
    public function __construct(private Closure $then) {}
    public function __destruct() { ($this->then)(); }
}

// A callback that does nothing and holds $held.
function holding(object $held): Closure
{
    return function () use ($held) {};
}

// Sleeps (blocking the PHP thread) and says for how long it really slept, in ms.
function slept(int $ms): int
{
    $t = hrtime(true);
    usleep($ms * 1000);
    out("slept " . ($n = intdiv(hrtime(true) - $t, 1_000_000)));
    return $n;
}

$server->on('close', fn($s, $fd) => out("close $fd"));
$server->on('shutdown', fn($s) => out("shutdown"));
if (getenv('SURGE_HTTP')) {
    $server->on('request', function ($req, $res) {
        match ($req->server['request_uri']) {
            '/forget' => null, // returns without calling end()
            '/long-poll' => [$GLOBALS['long_polls'][] = $res, out('long poll kept')], // answered at the stop
            '/write-and-forget' => $res->write("part one\n"),
            '/write-then-fatal' => [$res->write("part one\n"), trigger_error('fatal on purpose', E_USER_ERROR)],
            '/throw' => throw new RuntimeException('request failed on purpose'),
            '/fatal' => trigger_error('fatal on purpose', E_USER_ERROR),
            '/oom' => strlen(str_repeat('x', 1 << 30)),
            '/slow' => [out('slow request'), slept(400), respond($req, $res)],
            '/cookie' => [set_cookies($res), respond($req, $res)],
            '/redirect' => $res->redirect('/elsewhere?x=1', 301),
            '/reason' => reason($res),
            // Arguments as PHP's coercive typing reads them, and header() replacing itself.
            '/coerced' => [$res->status('201'), $res->header('X-Int', 5), $res->header('Content-Type', 'text/html'),
                           $res->header('content-type', 'application/json'), $res->cookie('uid', 5, '0', '/', null, 0, 1, null),
                           $res->header('Set-Cookie', 'raw=1'), $res->header('X-Gone', 'soon'), $res->header('X-Gone', null),
                           $res->end('coerced')],
            '/status-599' => [$res->status(599), $res->end('')],
            '/no-content' => [$res->status(204), $res->end()],
            '/relocated' => [$res->header('Location', '/a'), $res->redirect('/b', '301')],
            '/relocated-default' => $res->redirect('/c', null),
            // Framing headers that do not match the body.
            '/wrong-length' => [$res->header('Content-Length', '3'), $res->header('Transfer-Encoding', 'chunked'), $res->end('hello')],
            '/wrong-length-stream' => [$res->header('Content-Length', '100'), $res->write('hel'), $res->end('lo')],
            '/stream' => stream($res, 3),
            '/stream-forever' => stream($res, PHP_INT_MAX),
            '/stream-to-slow-client' => stream_until_refused($res),
            '/write-on-after-refusal' => stream_until_refused($res, write_on: true),
            '/file' => send_file($req->get, $res),
            '/form' => form($req, $res),
            '/digest' => $res->end(json_encode([$req->files['doc']['size'], md5_file($req->files['doc']['tmp_name']), $req->rawContent()])),
            '/upload-form' => $res->end('<!doctype html><meta charset="utf-8"><form method="post" enctype="multipart/form-data" action="/form">'
                . '<input name="title"><input type="file" name="doc"><input type="file" name="photos[]" multiple>'
                . '<input type="file" name="empty"><button>send</button></form>'),
            default => respond($req, $res),
        };
    });
    // What a long-poll endpoint does at a stop: the requests it kept are answered.
    $server->on('workerStop', function () {
        foreach ($GLOBALS['long_polls'] ?? [] as $res) {
            $res->status(503);
            out('long poll answered: ' . json_encode($res->end("server stopping\n")));
        }
    });
}

// What a form gave, beside what PHP's own parse_str() makes of the query string; for each
// upload whether PHP takes it for one and what it holds; ?move=path moves the upload `doc` there.
function form($req, $res): void
{
    parse_str($req->server['query_string'] ?? '', $parsed);
    $uploads = [];
    foreach ($req->files as $entry) {
        $names = (array) $entry['tmp_name'];
        array_walk_recursive($names, function ($tmp) use (&$uploads) {
            if ($tmp !== '') { // an input left empty
                $uploads[$tmp] = [is_uploaded_file($tmp), file_get_contents($tmp)];
            }
        });
    }
    $moved = isset($req->get['move']) ? move_uploaded_file($req->files['doc']['tmp_name'], $req->get['move']) : null;
    $res->header('Content-Type', 'application/json');
    $res->end(json_encode(['get' => $req->get, 'parse_str' => $parsed, 'post' => $req->post, 'files' => $req->files,
        'uploads' => $uploads, 'moved' => $moved]));
}

// Swoole's extra arguments: a reason phrase of its own, header()'s $format; a reason that would
// break the status line is refused.
function reason($res): void
{
    $res->status(299, 'Gone Fishing');
    $res->header('X-Format', 'kept', false);
    $refusals = [
        fn() => $res->status(200, "OK\r\nX-Injected: 1"),
        fn() => $res->status(103),
        fn() => $res->header('X-Nul', "a\x00b"),
    ];
    $said = [];
    foreach ($refusals as $refused) {
        try {
            $refused();
        } catch (Surge\Exception $e) {
            $said[] = $e->getMessage();
        }
    }
    $res->header('X-Refused', $said); // an array: one header each
    $res->end('fishing');
}

// The cookies of test_cookies_are_set_and_read_as_php_does; a refused one is named in a header.
function set_cookies($res): void
{
    $res->cookie('sid', 'a b&c', 0, '/', '', false, true, 'Lax');
    $res->cookie('gone');
    $res->cookie('until', 'v', time() + 3600, '/app', 'example.com', true);
    $res->rawCookie('token', 'a%20b=c/d', 0, '/', '', false, true);
    $said = [];
    foreach ([fn() => $res->cookie('bad;name', 'v'), fn() => $res->rawCookie('raw', 'a b'), fn() => $res->cookie('ctl', 'v', 0, "/\x01")] as $refused) {
        try {
            $refused();
        } catch (Surge\Exception $e) {
            $said[] = $e->getMessage();
        }
    }
    $res->header('X-Refused', $said);
}

// Server-sent events: one now, one every 20 ms from a timer, the last by end() after $count.
// sendfile() with the file, range and Content-Type the query gives; a refusal answers 404.
function send_file(array $query, $res): void
{
    if (isset($query['type'])) {
        $res->header('Content-Type', $query['type']);
    }
    try {
        $sent = $res->sendfile($query['path'], (int) ($query['offset'] ?? 0), (int) ($query['length'] ?? 0));
        out('sendfile ' . var_export($sent, true) . ', again ' . var_export($res->sendfile($query['path']), true));
    } catch (Surge\Exception $e) {
        out('sendfile refused: ' . $e->getMessage());
        $res->status(404);
        $res->end('no such file');
    }
}

// A write the client cannot take (gone away) stops the stream and says so.
function stream($res, int $count): void
{
    global $server;
    $res->header('Content-Type', 'text/event-stream');
    $res->write("data: 1\n\n");
    $n = 1;
    $server->tick(20, function ($id) use ($res, $count, &$n, $server) {
        if (++$n >= $count) {
            $res->end("data: end\n\n");
            $server->clearTimer($id);
        } elseif (!$res->write("data: $n\n\n")) {
            out('stream write refused, writable ' . var_export($res->isWritable(), true)
                . ', header ' . var_export($res->header('X-Late', 'x'), true));
            $server->clearTimer($id);
        }
    });
}

// 64 KiB chunks as fast as PHP can write them, to a client that does not read yet, until
// write() refuses (or 256 MiB: the bound never came); then end() with the last chunk.
function stream_until_refused($res, bool $write_on = false): void
{
    global $server;
    $server->after(5, function () use ($res, $write_on, $server) {
        $chunk = str_repeat('x', 65536);
        $sent = 0;
        while ($sent < (256 << 20) && $res->write($chunk)) {
            $sent += strlen($chunk);
        }
        out("refused after $sent bytes, writable " . var_export($res->isWritable(), true));
        if (!$write_on) {
            $res->end('done');
            return;
        }
        // As code that never looks at write()'s result does: what the client reads meanwhile
        // makes room, and later chunks are taken after the refused one.
        $ticks = 0;
        $server->tick(20, function ($id) use ($res, $server, &$ticks) {
            $res->write(str_repeat('y', 1000));
            if (++$ticks === 50) {
                $res->end('');
                $server->clearTimer($id);
            }
        });
    });
}

function respond($req, $res): void
{
    $res->status(201);
    $res->header('Content-Type', 'application/json');
    $res->end(json_encode([
        'fd' => $req->fd, 'get' => $req->get, 'post' => $req->post, 'cookie' => $req->cookie,
        'method' => $req->server['request_method'], 'uri' => $req->server['request_uri'],
        'path_info' => $req->server['path_info'], 'get_method' => $req->getMethod(),
        'body' => $req->rawContent(), 'host' => $req->header['host'] ?? null,
    ]));
}

$ok = $server->start();
out("start returned " . var_export($ok, true));
