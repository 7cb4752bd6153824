<?php

namespace Surge\Laravel\Support;

use Illuminate\Http\Request as IlluminateRequest;
use Surge\Http\Request;

/** Turns a Surge request (or WebSocket handshake) into an Illuminate request for request(). */
final class HttpRequest
{
    /**
     * `$secure`: the server speaks TLS (so request()->secure() and url() say https). The path
     * and the query are the request line's: they were parsed out of `http://<Host header><uri>`,
     * so a Host of `example.com/admin?role=admin#` made request()->path() "admin" and added a
     * query parameter. The Host header is kept as sent, for Symfony to check when asked.
     */
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
        $path = $info['request_uri'] ?? '/';
        $query = (string) ($info['query_string'] ?? '');
        if ($secure) {
            $server['HTTPS'] = 'on';
        }
        // A fixed host to parse the path against (a path of `//x` would be taken for a host);
        // the query is Surge's, parsed once already (and within max_input_vars).
        $illuminate = IlluminateRequest::create(
            ($secure ? 'https' : 'http').'://localhost'.$path,
            $method,
            $method === 'GET' ? (array) $request->get : (array) $request->post,
            (array) $request->cookie,
            (array) $request->files,
            $server,
            $method === 'GET' ? null : $request->rawContent()
        );
        $illuminate->query->replace((array) $request->get);
        $illuminate->server->add([
            'QUERY_STRING' => $query,
            'REQUEST_URI' => $path.($query === '' ? '' : '?'.$query),
            'SERVER_PORT' => $info['server_port'] ?? ($secure ? 443 : 80),
            'SERVER_PROTOCOL' => $info['server_protocol'] ?? 'HTTP/1.1',
            'REMOTE_PORT' => $info['remote_port'] ?? 0,
        ]);
        if (isset($server['HTTP_HOST'])) {
            $illuminate->server->set('HTTP_HOST', $server['HTTP_HOST']);
            $illuminate->headers->set('host', $server['HTTP_HOST']);
        }

        return $illuminate;
    }
}
