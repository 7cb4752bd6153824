<?php
// The smallest echo server, for the Autobahn conformance cases: every message goes back as it
// came (text as text, binary as binary), nothing is logged per message; permessage-deflate
// is offered (sections 12 and 13). SURGE_SETTINGS (JSON) adds settings, such as worker_threads 0.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$settings = getenv('SURGE_SETTINGS') ? json_decode(getenv('SURGE_SETTINGS'), true) : [];
$server->set($settings + ['log_level' => 'warn', 'package_max_length' => 16 * 1024 * 1024, 'websocket_compression' => true]);
$server->on('message', fn($s, $frame) => $s->push($frame->fd, $frame->data, $frame->opcode));
$server->start();
