<?php
// Fan-out, channels and the Redis bridge, driven by the tests. On open the client gets
// {"fd": ..., "socket": ...}. A message {"call": "method", "args": [...]} calls that method of
// the server (or `churn`: n subscribe/unsubscribe pairs) and the client gets {"reply": <result>}
// (or {"exception": ..., "message": ...});
// anything else is echoed back. The `redis` callback prints `redis <json [channel, payload]>`.
//
// Environment: SURGE_SETTINGS (JSON for set()), SURGE_SUBSCRIBE (JSON list subscribed before
// start()), SURGE_CLOSE_PUBLISH=1 to redisPublish('presence', "left <fd>") in the close
// callback, SURGE_REDIS_CALLBACK=0 to register no redis callback, SURGE_REDIS_SLEEP_MS to make
// the redis callback slow: it sleeps that long per message and prints the payload's length only
// (`redis <json [channel, length]>`).
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$settings = json_decode(getenv('SURGE_SETTINGS') ?: '{}', true);
$server->set($settings + ['log_level' => 'debug']);

function out(string $line): void { echo $line, "\n"; }

$server->on('start', fn($s) => out("start {$s->port}"));
$server->on('open', function ($s, $req) {
    $s->push($req->fd, json_encode(['fd' => $req->fd, 'socket' => $s->socketId($req->fd)]));
});
$server->on('message', function ($s, $frame) {
    $call = json_decode($frame->data, true);
    if (!is_array($call) || !isset($call['call'])) {
        $s->push($frame->fd, $frame->data, $frame->opcode);
        return;
    }
    try {
        $args = $call['args'] ?? [];
        if (isset($call['binary'])) { // the index of an argument sent base64-encoded
            $args[$call['binary']] = base64_decode($args[$call['binary']]);
        }
        $reply = ['reply' => match ($call['call']) {
            // A channel per client, taken on open and let go on close, n times over.
            'churn' => array_map(fn($i) => [$s->subscribe("user.$i"), $s->unsubscribe("user.$i")], range(1, $args[0])) !== [],
            default => $s->{$call['call']}(...$args),
        }];
    } catch (Surge\Exception $e) {
        $reply = ['exception' => get_class($e), 'message' => $e->getMessage()];
    }
    $s->push($frame->fd, json_encode($reply));
});
$server->on('close', function ($s, $fd) {
    out("close $fd");
    if (getenv('SURGE_CLOSE_PUBLISH')) {
        // "Gone offline", as apps tell the others, also for the clients a stop closes.
        $s->redisPublish('presence', "left $fd");
    }
});
if (getenv('SURGE_REDIS_CALLBACK') !== '0') {
    $sleep_ms = (int) getenv('SURGE_REDIS_SLEEP_MS');
    $server->on('redis', function ($s, string $channel, string $payload) use ($sleep_ms) {
        if ($sleep_ms > 0) {
            usleep($sleep_ms * 1000);
            $payload = strlen($payload);
        }
        out('redis ' . json_encode([$channel, $payload], JSON_INVALID_UTF8_SUBSTITUTE));
    });
}
if ($subscribe = getenv('SURGE_SUBSCRIBE')) {
    $server->subscribe(json_decode($subscribe, true));
}
$server->start();
out('stopped');
