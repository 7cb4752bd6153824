<?php
// For fault tests: logs every message to stdout (one line each), floods a client on request,
// and raises a PHP warning on request.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$settings = getenv('SURGE_SETTINGS') ? json_decode(getenv('SURGE_SETTINGS'), true) : [];
$server->set($settings + ['log_level' => 'warn']);
$server->on('start', fn($s) => print("start {$s->port}\n"));
if (getenv('SURGE_LOG_CLOSE')) {
    $server->on('close', fn($s, $fd) => print("close $fd\n"));
}
$server->on('message', function ($s, $frame) {
    $d = $frame->data;
    echo "message $d\n";
    if ($d === 'flood') {
        // 256 KiB every 5 ms until the push is refused: the client never reads.
        $chunk = str_repeat('x', 256 * 1024);
        $fd = $frame->fd;
        $pushed = 0;
        $s->tick(5, function ($id) use ($s, $fd, $chunk, &$pushed) {
            if ($s->push($fd, $chunk)) {
                $pushed += strlen($chunk);
            } else {
                echo "flood stopped after $pushed bytes\n";
                $s->clearTimer($id);
            }
        });
    } elseif ($d === 'warn') {
        echo $undefined_variable;
        $s->push($frame->fd, 'after warning');
    } elseif (!str_starts_with($d, 'busy')) {
        $s->push($frame->fd, $d);
    }
});
$server->start();
