<?php
// A Pusher protocol server whose PHP callbacks observe subscriptions, unsubscriptions and client
// events: each is printed as one line of JSON. A subscription to `presence-throw` throws, to
// check that the server keeps serving after an exception in such a callback. A message from a
// plain WebSocket client is a JSON list of pusherTrigger()'s arguments (data "NAN" and "LATIN1"
// stand for a float JSON cannot hold and text that is not UTF-8): the answer is what it
// returned, or the message of what it threw.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$server->set(json_decode(getenv('SURGE_SETTINGS'), true) + ['log_level' => 'info']);

function out(array $line): void { echo json_encode($line), "\n"; }

$server->on('pusherSubscribe', function ($s, int $fd, string $channel, ?array $member, string $appId) {
    if ($channel === 'presence-throw') {
        throw new RuntimeException("thrown on purpose for $channel");
    }
    out(['subscribe', $fd, $s->socketId($fd), $channel, $member, $appId]);
});
$server->on('pusherUnsubscribe', fn($s, int $fd, string $channel, string $appId) => out(['unsubscribe', $fd, $channel, $appId]));
$server->on('pusherClientEvent', function ($s, int $fd, string $channel, string $event, mixed $data, string $appId) {
    out(['client', $fd, $channel, $event, $data, $appId]);
});
$server->on('message', function ($s, $frame) {
    $args = json_decode($frame->data, true);
    $args[2] = match ($args[2]) { 'NAN' => NAN, 'LATIN1' => "caf\xe9", default => $args[2] };
    try {
        $s->push($frame->fd, json_encode($s->pusherTrigger(...$args)));
    } catch (Surge\Exception $e) {
        $s->push($frame->fd, $e->getMessage());
    }
});
$server->start();
