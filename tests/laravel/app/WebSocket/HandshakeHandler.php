<?php

namespace App\WebSocket;

use App\Models\User;
use Surge\Http\Request;
use Surge\Http\Response;
use Surge\Laravel\Contracts\HandlesHandshake;

/** The test app's handler, turning away at the handshake a client with no known token. */
class HandshakeHandler extends AppHandler implements HandlesHandshake
{
    public function onHandshake(Request $request, Response $response): bool
    {
        $token = request()->query('token'); // request() is the handshake
        if ($token === 'throw') {
            throw new \RuntimeException('onHandshake failed on purpose');
        }
        if ($token === null || ! User::where('token', $token)->exists()) {
            $response->status(401);
            $response->header('WWW-Authenticate', 'Token');
            $response->end('who are you?');

            return false;
        }
        $response->cookie('seen', 'yes');

        return true;
    }
}
