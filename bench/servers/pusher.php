<?php
// Benchmark Pusher server (issue 8, scenario 5): one Pusher app, app_id "app-id", key
// "app-key", secret "app-secret" (what bench/peers/pusher-trigger.js signs with, as for soketi).
// Clients connect to /app/app-key?protocol=7 and are served by the engine; triggers arrive
// through the Pusher HTTP API on the same port. Listens on 127.0.0.1:$SURGE_PORT (0: a free
// port) and prints "ready PORT" once listening. Default settings apart from the log level.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) (getenv('SURGE_PORT') ?: 0));
$server->set([
    'pusher' => [['app_id' => 'app-id', 'key' => 'app-key', 'secret' => 'app-secret']],
    'log_level' => 'warn',
]);
$server->on('start', function ($s) {
    echo "ready {$s->port}\n";
});
$server->on('message', fn($s, $f) => null);
$server->start();
