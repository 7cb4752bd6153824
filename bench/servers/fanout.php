<?php
// Benchmark fan-out server. Every WebSocket client joins the channel "all" when it opens.
// GET /trigger?mode=broadcast|publish|loop&seq=S&count=C sends C messages (default 1) of 100
// bytes, "#<seq>#" padded with 'x', numbered S, S+1, ..., to every client:
//   broadcast  $server->broadcast($msg)
//   publish    $server->publish('all', $msg)
//   loop       foreach ($server->connections as $fd) $server->push($fd, $msg)
// and answers with the number of deliveries queued. GET /members: how many have joined. Listens on 127.0.0.1:$SURGE_PORT (0: a free
// port) and prints "ready PORT" once listening. Default settings apart from the log level
// (and SURGE_WORKER_THREADS, see settings.php).
$server = new Surge\WebSocket\Server('127.0.0.1', (int) (getenv('SURGE_PORT') ?: 0));
require __DIR__ . '/settings.php';
$server->set(bench_settings());
$server->on('start', function ($s) {
    echo "ready {$s->port}\n";
});
$server->on('open', fn($s, $req) => $s->join($req->fd, 'all'));
$server->on('message', fn($s, $f) => null);
$server->on('request', function ($req, $resp) use ($server) {
    if ($req->server['path_info'] === '/members') {
        // The runner waits until every client has joined before the first trigger.
        $resp->end(count($server->members('all')) . "\n");
        return;
    }
    $mode = $req->get['mode'] ?? '';
    $seq = (int) ($req->get['seq'] ?? 0);
    $count = max(1, (int) ($req->get['count'] ?? 1));
    $queued = 0;
    for ($i = 0; $i < $count; $i++) {
        $msg = str_pad('#' . ($seq + $i) . '#', 100, 'x');
        if ($mode === 'broadcast') {
            $queued += $server->broadcast($msg);
        } elseif ($mode === 'publish') {
            $queued += $server->publish('all', $msg);
        } elseif ($mode === 'loop') {
            foreach ($server->connections as $fd) {
                $queued += (int) $server->push($fd, $msg);
            }
        } else {
            $resp->status(400);
            $resp->end("unknown mode\n");
            return;
        }
    }
    $resp->end("$queued\n");
});
$server->start();
