<?php

namespace Surge\Laravel\Support;

use Illuminate\Http\Request as IlluminateRequest;
use Surge\Http\Request;

/** Turns a Surge request (or WebSocket handshake) into an Illuminate request for request(). */
final class HttpRequest
{
    /** `$secure`: the server speaks TLS (so request()->secure() and url() say https). */
    public static function from(Request $request, bool $secure): IlluminateRequest
    {
        $server = [];
        foreach ((array) $request->header as $name => $value) {
            $key = strtoupper(str_replace('-', '_', (string) $name));
            $server[in_array($key, ['CONTENT_TYPE', 'CONTENT_LENGTH'], true) ? $key : 'HTTP_'.$key] = $value;
        }
        $info = (array) $request->server;
        $server['REMOTE_ADDR'] = $info['remote_addr'] ?? '127.0.0.1';
        $method = strtoupper($info['request_method'] ?? 'GET');
        $uri = ($info['request_uri'] ?? '/').(isset($info['query_string']) ? '?'.$info['query_string'] : '');
        $host = $request->header['host'] ?? 'localhost';
        if ($secure) {
            $server['HTTPS'] = 'on';
        }

        return IlluminateRequest::create(
            ($secure ? 'https://' : 'http://').$host.$uri,
            $method,
            $method === 'GET' ? (array) $request->get : (array) $request->post,
            (array) $request->cookie,
            (array) $request->files,
            $server,
            $method === 'GET' ? null : $request->rawContent()
        );
    }
}
