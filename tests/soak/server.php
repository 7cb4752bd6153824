<?php
// The soak test's server: echoes every message, and every 20th message is also broadcast to all
// open connections, so the churn exercises pushes to many clients as well as echoes.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$server->set(['log_level' => 'warn', 'max_connection' => 20000]);
$count = 0;
$server->on('start', fn($s) => print("start {$s->port}\n"));
$server->on('message', function ($s, $frame) use (&$count) {
    $s->push($frame->fd, $frame->data);
    if (++$count % 20 === 0) {
        foreach ($s->connections as $fd) {
            $s->push($fd, "broadcast $count");
        }
    }
});
$server->start();
