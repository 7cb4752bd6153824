<?php
// For the inbound-budget test: 'sleep' blocks the PHP thread for 3 s; every other message is
// only counted; 'count' answers how many messages and bytes arrived. SURGE_SETTINGS (JSON) adds
// settings.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$server->set(['log_level' => 'warn'] + json_decode(getenv('SURGE_SETTINGS') ?: '[]', true));
$server->on('start', fn($s) => print("start {$s->port}\n"));
[$messages, $bytes] = [0, 0];
$server->on('message', function ($s, $frame) use (&$messages, &$bytes) {
    if ($frame->data === 'sleep') {
        sleep(3);
        $s->push($frame->fd, 'slept');
    } elseif ($frame->data === 'count') {
        $s->push($frame->fd, "$messages $bytes");
    } else {
        $messages++;
        $bytes += strlen($frame->data);
    }
});
$server->start();
