<?php

namespace App\WebSocket;

/** The test app's handler for the users of a guard with no user provider (Auth::viaRequest()). */
class ApiGuardHandler extends AppHandler
{
    protected function guard(): string
    {
        return 'api';
    }
}
