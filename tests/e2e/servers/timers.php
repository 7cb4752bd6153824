<?php
// Timers: prints what each one does, so tests can check how often and with what they ran.
$server = new Surge\WebSocket\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$server->set(['log_level' => 'debug']);

function out(string $line): void { echo $line, "\n"; }

// Created before start(): one that runs, one cleared before it could.
$server->after(30, fn() => out("early after ran"));
$cancelled = $server->after(30, fn() => out("cancelled after ran"));
out("clear before start " . json_encode($server->clearTimer($cancelled)));

$server->on('start', function ($s) {
    $ticks = 0;
    $id = $s->tick(40, function ($timerId) use ($s, &$ticks, &$id) {
        $ticks++;
        out("tick $timerId $ticks of $id");
        if ($ticks === 3) {
            out("clear tick " . json_encode($s->clearTimer($timerId)));
        }
    });
    $once = $s->after(20, function (...$args) use ($s, &$once) {
        out("after ran with " . json_encode($args));
        out("clear fired after " . json_encode($s->clearTimer($once)));
    });
    out("clear unknown " . json_encode($s->clearTimer(987654)));
});
$server->on('open', function ($s, $req) {
    // A timer that pushes to a client, 3 times.
    $n = 0;
    $s->tick(30, function ($id) use ($s, $req, &$n) {
        $s->push($req->fd, "tick " . ++$n);
        if ($n === 3) {
            $s->clearTimer($id);
        }
    });
});
$server->on('message', fn() => null);
$server->start();
