<?php

namespace Surge\Laravel\Contracts;

use Surge\Http\Request;
use Surge\Http\Response;

/**
 * Optional: a handler that also implements this decides on each WebSocket handshake before
 * the connection exists, with the app booted for the handshake as a request (auth(), a
 * session cookie, request()->query()): a client it turns away never connects.
 */
interface HandlesHandshake
{
    /**
     * True lets the client in (Surge completes the handshake, with the headers and cookies set
     * on $response, and onOpen follows); false refuses it with the answer ended on $response
     * ($response->status(401); $response->end('...')), or a 403 if none was.
     */
    public function onHandshake(Request $request, Response $response): bool;
}
