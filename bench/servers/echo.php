<?php
// Benchmark echo server: every message is pushed back to its sender from PHP.
// Listens on 127.0.0.1:$SURGE_PORT (0: a free port) and prints "ready PORT" once listening.
// Default settings apart from the log level: the benchmark measures Surge as shipped
// (SURGE_COMPRESSION=1 turns websocket_compression on, for the deflate scenarios;
// SURGE_WORKER_THREADS sets worker_threads, 0 for the network work on the PHP thread).
$server = new Surge\WebSocket\Server('127.0.0.1', (int) (getenv('SURGE_PORT') ?: 0));
require __DIR__ . '/settings.php';
$server->set(bench_settings(['websocket_compression' => getenv('SURGE_COMPRESSION') === '1']));
$server->on('start', function ($s) {
    echo "ready {$s->port}\n";
});
$server->on('message', fn($s, $f) => $s->push($f->fd, $f->data));
$server->start();
