<?php
// Benchmark of the Laravel broadcast path: subscribes the Redis channel "bench" (Laravel's
// default prefix laravel_database_ added) through the Redis bridge at $SURGE_REDIS; every
// WebSocket client joins the Surge channel "bench" when it opens, so each Laravel-shaped
// message PUBLISHed to laravel_database_bench is forwarded natively (redis_forward) to all.
// Listens on 127.0.0.1:$SURGE_PORT (0: a free port); prints "ready PORT" once listening
// (SURGE_WORKER_THREADS: see settings.php).
$server = new Surge\WebSocket\Server('127.0.0.1', (int) (getenv('SURGE_PORT') ?: 0));
require __DIR__ . '/settings.php';
$server->set(bench_settings(['redis' => getenv('SURGE_REDIS')]));
$server->subscribe('bench');
$server->on('start', function ($s) {
    echo "ready {$s->port}\n";
});
$server->on('open', fn($s, $req) => $s->join($req->fd, 'bench'));
$server->on('message', fn($s, $f) => null);
// GET /members: "<members of bench> redis <bridge state> <stats as JSON>", so the load
// generator can wait until every client has joined and the bridge is connected.
$server->on('request', function ($req, $resp) use ($server) {
    $redis = $server->stats()['redis'] ?? [];
    $resp->end(count($server->members('bench')) . ' redis ' . ($redis['state'] ?? 'none') . ' ' . json_encode($redis) . "\n");
});
$server->start();
