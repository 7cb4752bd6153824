<?php
// Every public method of Surge's classes, called with hostile arguments: each parameter in turn
// given every value of a pool (edge numbers, NaN, NUL bytes, invalid UTF-8, large strings, odd
// arrays, objects, throwing callables, values of the wrong type) while the others stay sane.
// A call may return or throw; it must not crash the process, and what it returns must be of
// the type the method declares. Prints "sweep PHASE: N calls, M threw" per phase and
// "wrong type: ..." for each return that does not match its declaration.
//
// Phases: a Table; a Server that is never started (settings, callbacks, every method); then,
// on the server that serves, every method from the open callback with the live client's fd,
// the connections iterator, and Request/Response from the request callback, which then sweeps
// disconnect() and close() with the client's fd. The test connects a client, sends an HTTP
// request, and reads "done" when every phase has run; the server then shuts down.

function out(string $line): void { echo $line, "\n"; }

$recursive = [1];
$recursive[] = &$recursive;
$big = str_repeat('x', 70000);

// Values by declared type name; each pool also holds values of other types on purpose.
$pools = [
    'int' => [0, -1, 1, 255, 1000, 65535, 2 ** 31, PHP_INT_MAX, PHP_INT_MIN, '7', 1.5, NAN, null, 'x'],
    'float' => [0.0, -0.0, -1.5, 1e-300, 1e308, INF, -INF, NAN, PHP_INT_MAX, '0.5', null],
    'string' => ['', "\0", "a\0b", "\xff\xfe\xfd", "\u{1F600}", "\r\n\r\nX: y", $big, 42, 1.5, true, null],
    'array' => [[], [0], [-1, PHP_INT_MAX, PHP_INT_MIN], ['k' => 'v', 7 => null], [[1, [2, [3]]]],
        [null, true, 1.5, NAN, 'x', "\0"], [new stdClass()], $recursive, array_fill(0, 5000, 'y'),
        ['i' => 'text', 'f' => [], 's' => new stdClass()], 'not an array', 3],
    'callable' => [fn() => null, fn(...$a) => throw new RuntimeException('thrown by a callback'),
        'strlen', fn(&$byRef) => $byRef, [new ArrayObject([1]), 'count'], 'no_such_function',
        [new stdClass(), 'nothing'], 42],
    'bool' => [true, false, 0, 'yes', null],
    'mixed' => [null, 0, '', [], new stdClass()],
];
$pools['object'] = [new stdClass(), new ArrayObject(), function () {}];

/** The values to try for a parameter: the pools of its type's names, null if it allows null. */
function hostile_values(ReflectionParameter $p, array $pools): array
{
    $t = $p->getType();
    $names = $t === null ? ['mixed'] : array_map(fn($n) => $n->getName(),
        $t instanceof ReflectionUnionType ? $t->getTypes() : [$t]);
    $values = [new stdClass()];
    foreach ($names as $name) {
        $values = array_merge($values, $pools[$name] ?? $pools['mixed']);
    }
    return $values;
}

function matches_type($value, ?ReflectionType $t): bool
{
    if ($t === null) {
        return true;
    }
    if ($value === null && $t->allowsNull()) {
        return true;
    }
    foreach ($t instanceof ReflectionUnionType ? $t->getTypes() : [$t] as $named) {
        $name = $named->getName();
        $ok = match ($name) {
            'mixed' => true,
            'void', 'null' => $value === null,
            'int' => is_int($value),
            'float' => is_float($value),
            'string' => is_string($value),
            'bool' => is_bool($value),
            'false' => $value === false,
            'true' => $value === true,
            'array' => is_array($value),
            'callable' => is_callable($value),
            'iterable' => is_iterable($value),
            default => $value instanceof $name,
        };
        if ($ok) {
            return true;
        }
    }
    return false;
}

/**
 * Calls every method of $object (but $skip) with each parameter in turn set to each hostile
 * value, the other parameters at $sane($method, $param); also with the optional ones left out.
 */
function sweep(string $phase, object $object, callable $sane, array $pools, array $skip = []): void
{
    $calls = $threw = 0;
    foreach ((new ReflectionObject($object))->getMethods(ReflectionMethod::IS_PUBLIC) as $m) {
        if ($m->isConstructor() || $m->isStatic() || in_array($m->getName(), $skip, true)) {
            continue;
        }
        $params = $m->getParameters();
        $base = array_map(fn($p) => $sane($m->getName(), $p->getName()), $params);
        $argLists = [array_slice($base, 0, $m->getNumberOfRequiredParameters())];
        foreach ($params as $i => $p) {
            foreach (hostile_values($p, $pools) as $v) {
                $args = $base;
                $args[$i] = $v;
                $argLists[] = $args;
            }
        }
        foreach ($argLists as $args) {
            $calls++;
            try {
                $result = $m->invokeArgs($object, $args);
                if (!matches_type($result, $m->getReturnType())) {
                    out("wrong type: $phase " . $m->getName() . " returned " . get_debug_type($result));
                }
            } catch (Throwable $e) {
                $threw++;
            }
        }
    }
    out("sweep $phase: $calls calls, $threw threw");
}

/** Sane arguments by parameter name, with $fd the connection to use. */
function sane_args(int $fd): callable
{
    return fn(string $method, string $param) => match ($param) {
        'fd' => $fd,
        'size' => 64,
        'conflict_proportion' => 0.2,
        'host' => '127.0.0.1',
        'port' => 0,
        'ms' => 50,
        'timer_id' => 999999,
        'key' => 'k',
        'row' => ['i' => 1, 'f' => 1.5, 's' => 'v'],
        'column', 'field' => $method === 'column' ? 'extra' : 'i',
        'type' => Surge\Table::TYPE_INT,
        'by', 'opcode', 'code', 'reason', 'except', 'data' => $param === 'data' ? 'hello' : null,
        'channel', 'channels' => 'room',
        'settings' => [],
        'event' => 'message',
        'callback' => fn() => null,
        'payload' => 'payload',
        'name' => 'X-Name',
        'value' => 'value',
        'expire' => 0,
        'path' => '/',
        'domain' => '',
        'secure', 'httponly' => false,
        'samesite' => 'Lax',
        'location' => '/elsewhere',
        'http_code' => 302,
        default => 'x',
    };
}

/** Clears the timers a sweep made (ids count up from 1 per server), so no hostile callback
 * keeps running after its phase. */
function clear_timers(Surge\WebSocket\Server $s): void
{
    $last = $s->after(1000, fn() => null);
    for ($id = 1; $id <= $last; $id++) {
        $s->clearTimer($id);
    }
}

// --- a Table, and a Server that never starts -----------------------------------------------

$table = new Surge\Table(64);
$table->column('i', Surge\Table::TYPE_INT);
$table->column('f', Surge\Table::TYPE_FLOAT);
$table->column('s', Surge\Table::TYPE_STRING, 16);
$table->create();
$table->set('k', ['i' => 1, 'f' => 1.5, 's' => 'v']);
sweep('table', $table, sane_args(1), $pools);
foreach ([[0], [-1], [PHP_INT_MAX], [64, NAN], [64, INF], [64, -1.0], [64, 1e300]] as $args) {
    try {
        $t = new Surge\Table(...$args);
        $t->column('i', Surge\Table::TYPE_INT);
        $t->create();
    } catch (Throwable $e) {
    }
}
sweep('table before create', new Surge\Table(8), sane_args(1), $pools);

$idle = new Surge\WebSocket\Server('127.0.0.1', 0);
sweep('unstarted server', $idle, sane_args(1), $pools, ['start']);
clear_timers($idle);
$settingKeys = ['heartbeat_idle_time', 'max_connection', 'worker_threads', 'package_max_length',
    'allowed_origins', 'ssl_cert_file', 'redis', 'pusher', 'log_level', 'websocket_compression'];
$calls = 0;
foreach ($settingKeys as $key) {
    foreach (array_merge(...array_values($pools)) as $value) {
        $calls++;
        try {
            (new Surge\WebSocket\Server('127.0.0.1', 0))->set([$key => $value]);
        } catch (Throwable $e) {
        }
    }
}
out("sweep settings: $calls calls");
foreach ([['', 0], ['127.0.0.1', -1], ['127.0.0.1', 65536], ["\0", 1], ['::1', PHP_INT_MAX]] as $args) {
    try {
        new Surge\WebSocket\Server(...$args);
    } catch (Throwable $e) {
    }
}

// --- the server that serves ----------------------------------------------------------------

$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$server->set(array_merge(['log_level' => 'off'], json_decode(getenv('SURGE_SETTINGS') ?: '{}', true)));
$server->on('open', function ($s, $request) use ($pools) {
    // The client's connection closes last: disconnect and close are swept with it at the end.
    sweep('serving server', $s, sane_args($request->fd), $pools, ['shutdown', 'disconnect', 'close']);
    sweep('connections', $s->connections, sane_args($request->fd), $pools);
    clear_timers($s);
    out("swept with a client");
});
$server->on('message', fn() => null);
$server->on('request', function ($request, $response) use ($pools, $server) {
    sweep('request', $request, sane_args($request->fd), $pools);
    sweep('response', $response, sane_args($request->fd), $pools);
    $fds = iterator_to_array($server->connections, false);
    sweep('closing', $server, sane_args($fds[0] ?? 1), $pools,
        array_diff(get_class_methods($server), ['disconnect', 'close']));
    out("done");
    $server->after(10, fn() => $server->shutdown());
});
$server->start();
