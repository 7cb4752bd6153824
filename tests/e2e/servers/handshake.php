<?php
// A handshake callback, in the two ways code writes one:
// - SURGE_HANDSHAKE=swoole (default): as Swoole's documentation writes it (the key checked, the
//   Accept computed, status(101) and end(); a refusal answered with end() and `return false`;
//   the open logic deferred, since Swoole calls no open callback after its handshake callback);
// - SURGE_HANDSHAKE=return: only `return` true or false, Surge doing the handshake (the open
//   logic deferred likewise).
// The first greets each connection it lets in right after end(), from the callback itself.

use Surge\Table;
use Surge\WebSocket\Server;

$server = new Server('127.0.0.1', (int) getenv('SURGE_PORT'));
$server->set(getenv('SURGE_SETTINGS') ? json_decode(getenv('SURGE_SETTINGS'), true) : []);
$users = new Table(64);
$users->column('name', Table::TYPE_STRING, 32);
$users->create();
$style = getenv('SURGE_HANDSHAKE') ?: 'swoole';

$onOpen = function (Server $server, $request) use ($users) {
    $users->set($request->fd, ['name' => $request->get['name'] ?? '?']);
    $server->push($request->fd, 'deferred open ' . $users->get($request->fd, 'name'));
};

$server->on('handshake', function ($request, $response) use ($server, $style, $onOpen) {
    echo "handshake {$request->fd} {$request->server['request_uri']}\n";
    $token = $request->get['token'] ?? '';
    // SURGE_SLOW_HANDSHAKE: milliseconds the callback takes (an auth call elsewhere).
    usleep((int) getenv('SURGE_SLOW_HANDSHAKE') * 1000);
    if ($token === 'last') {
        // The handshakes after this one get Surge's own, and so the open callback; even those
        // already waiting.
        $server->on('handshake', null);
    }
    if ($token === 'throw') {
        throw new RuntimeException('no handshake today');
    }
    if ($token === 'close') {
        // Refused with no answer at all, as Swoole's close() of the request's fd does.
        $status = $server->getClientInfo($request->fd)['websocket_status'];
        echo 'closed handshake: ', json_encode([$status, $server->close($request->fd)]), "\n";
        return false;
    }
    if ($style === 'return') {
        if ($token === 'cookie') {
            $response->cookie('session', 'abc');
        }
        $in = in_array($token, ['secret', 'cookie', 'last'], true);
        if ($in) {
            $server->defer(fn () => $onOpen($server, $request));
        }
        return $in;
    }
    if ($token !== 'secret') {
        $response->status(401);
        $response->header('WWW-Authenticate', 'Token');
        $response->end("a token is needed\n");
        return false;
    }
    $key = $request->header['sec-websocket-key'];
    if (preg_match('#^[+/0-9A-Za-z]{21}[AQgw]==$#', $key) === 0 || strlen(base64_decode($key)) !== 16) {
        $response->end();
        return false;
    }
    $headers = [
        'Upgrade' => 'websocket',
        'Connection' => 'Upgrade',
        'Sec-WebSocket-Accept' => base64_encode(sha1($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11', true)),
        'Sec-WebSocket-Version' => '13',
    ];
    if (isset($request->header['sec-websocket-protocol'])) {
        $headers['Sec-WebSocket-Protocol'] = explode(',', $request->header['sec-websocket-protocol'])[0];
    }
    foreach ($headers as $name => $value) {
        $response->header($name, $value);
    }
    $response->header('X-Handshake', 'php');
    $response->status(101);
    $response->end();
    $server->push($request->fd, 'welcome');
    $server->defer(fn () => $onOpen($server, $request));
    return true;
});

// Swoole calls no open callback once a handshake callback is set: neither does Surge.
$server->on('open', fn (Server $server, $request) => $server->push($request->fd, 'open callback ran'));
$server->on('message', function (Server $server, $frame) {
    $data = $frame->data === 'count' ? 'count ' . count($server->connections) : $frame->data;
    $server->push($frame->fd, "{$frame->fd}: $data");
});
$server->on('close', function (Server $server, int $fd) use ($users) {
    $users->del($fd);
    echo "close $fd, rows left " . count($users) . "\n";
});
$server->on('start', fn () => print("listening\n"));
$server->start();
