<?php

namespace Surge\Laravel\Contracts;

use Surge\Http\Request;
use Surge\Http\Response;

/** Optional: a handler that also implements this answers plain HTTP requests on the same port. */
interface HandlesHttp
{
    /** Answer with $response->status(), ->header() and ->end($body). */
    public function onRequest(Request $request, Response $response): void;
}
