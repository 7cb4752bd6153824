<?php

namespace Surge\Laravel\Contracts;

use Surge\Http\Request;
use Surge\WebSocket\Frame;
use Surge\WebSocket\Server;

/**
 * What `php artisan surge:serve` calls for each WebSocket event. The class named in
 * config('surge.handler') is resolved from the container once, when the server starts: keep
 * per-connection state keyed by $fd and forget it in onClose(); never keep a user, a request or
 * a model in a property between callbacks (see README, "Rules for handler authors").
 */
interface Handler
{
    /** A client completed the WebSocket handshake; $request carries its query string, headers and cookies. */
    public function onOpen(Server $server, Request $request): void;

    /** A whole message arrived from $frame->fd. */
    public function onMessage(Server $server, Frame $frame): void;

    /** The connection $fd is gone (it can no longer be pushed to). */
    public function onClose(Server $server, int $fd): void;
}
