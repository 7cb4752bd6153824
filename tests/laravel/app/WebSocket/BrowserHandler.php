<?php

namespace App\WebSocket;

use App\Models\User;
use Illuminate\Http\Exceptions\HttpResponseException;
use Illuminate\Support\Facades\Broadcast;
use Illuminate\Support\Facades\Validator;
use Surge\Http\Request;
use Surge\Http\Response;
use RuntimeException;
use Surge\Laravel\Contracts\HandlesHttp;
use Throwable;

/**
 * The test app's handler plus plain HTTP, for Laravel Echo in a real browser
 * (tests/browser/echo.mjs): `/echo` is a page that loads the browser builds of pusher-js and
 * laravel-echo (served from the repository's node_modules: the test machine has no internet),
 * and `/broadcasting/auth` signs private subscriptions for the user of the `X-Token` header
 * once Laravel's routes/channels.php allowed them, as Laravel's pusher broadcaster would.
 */
class BrowserHandler extends AppHandler implements HandlesHttp
{
    private const SCRIPTS = [
        '/js/pusher.min.js' => 'pusher-js/dist/web/pusher.min.js',
        '/js/echo.iife.js' => 'laravel-echo/dist/echo.iife.js',
    ];

    /** @var list<Response> streams /stream began, for /stream-end to end */
    private array $streams = [];

    public function onRequest(Request $request, Response $response): void
    {
        $path = $request->server['request_uri'] ?? '/';
        if (isset(self::SCRIPTS[$path])) {
            $file = base_path('../../node_modules/'.self::SCRIPTS[$path]);
            $response->header('Content-Type', 'text/javascript; charset=utf-8');
            $response->end(file_get_contents($file));
        } elseif ($path === '/echo') {
            $response->header('Content-Type', 'text/html; charset=utf-8');
            $response->end($this->page());
        } elseif ($path === '/favicon.ico') {
            $response->status(204);
            $response->end('');
        } elseif ($path === '/broadcasting/auth' && $request->server['request_method'] === 'POST') {
            $this->signSubscription($response);
        } elseif ($path === '/upload' && $request->server['request_method'] === 'POST') {
            $this->upload($response);
        } elseif ($path === '/server') {
            // An HTTP route has no $server argument: the container has it, by Swoole's name too.
            $server = app(\Surge\WebSocket\Server::class);
            abort_unless(app('Surge\\Http\\Server') === $server && app('Surge\\Server') === $server, 500);
            $response->header('Content-Type', 'application/json');
            $response->end(json_encode(['connections' => $server->stats()['connections'], 'pid' => $server->worker_pid]));
        } elseif ($path === '/request') {
            $response->header('Content-Type', 'application/json');
            $response->end(json_encode(['path' => request()->path(), 'query' => request()->query(), 'uri' => request()->getRequestUri()]));
        } elseif ($path === '/stream') {
            // Written now, ended by the next request to /stream-end: kept past this callback.
            $response->write("first\n");
            $this->streams[] = $response;
        } elseif ($path === '/stream-end') {
            foreach ($this->streams as $stream) {
                $stream->end("last\n");
            }
            $this->streams = [];
            $response->end('ended');
        } elseif ($path === '/refused') {
            // How Laravel code refuses a request: each answered as Laravel answers it.
            match (request('how')) {
                'abort' => abort(403, 'not yours'),
                'missing' => User::findOrFail(999999),
                'invalid' => Validator::make(request()->all(), ['name' => 'required'])->validate(),
                'redirect' => throw new HttpResponseException(redirect('/elsewhere')),
                default => throw new RuntimeException('broken on purpose'),
            };
        } else {
            $response->status(404);
            $response->end('not found');
        }
    }

    /**
     * A form with a file, as a Laravel controller takes one: validated (the `file` rule asks
     * PHP whether it is an upload), then moved under storage/ (move_uploaded_file()).
     */
    private function upload(Response $response): void
    {
        $validator = Validator::make(request()->all(), ['doc' => 'required|file|max:1', 'tags' => 'array']);
        $response->header('Content-Type', 'application/json');
        if ($validator->fails()) {
            $response->status(422);
            $response->end(json_encode($validator->errors()));

            return;
        }
        $file = request()->file('doc');
        $moved = $file->move(storage_path('uploads'), 'doc.txt');
        $response->end(json_encode([
            'name' => $file->getClientOriginalName(),
            'type' => $file->getClientMimeType(),
            'tags' => request()->input('tags'),
            'q' => request()->query('q'),
            'stored' => file_get_contents($moved->getPathname()),
        ]));
    }

    /** Laravel decides (routes/channels.php); the answer is signed with the Pusher app's secret. */
    private function signSubscription(Response $response): void
    {
        $user = User::where('token', (string) request()->header('x-token'))->first();
        if ($user === null) {
            $response->status(403);
            $response->end('{"error":"unknown token"}');

            return;
        }
        auth()->setUser($user);
        try {
            Broadcast::auth(request());
        } catch (Throwable $e) {
            $response->status(403);
            $response->end(json_encode(['error' => class_basename($e)]));

            return;
        }
        $pusher = config('broadcasting.connections.pusher');
        $signed = request()->input('socket_id').':'.request()->input('channel_name');
        $response->header('Content-Type', 'application/json');
        $response->end(json_encode(['auth' => $pusher['key'].':'.hash_hmac('sha256', $signed, $pusher['secret'])]));
    }

    private function page(): string
    {
        $key = json_encode(config('broadcasting.connections.pusher.key'));

        return <<<HTML
            <!doctype html>
            <meta charset="utf-8">
            <title>Laravel Echo on Surge</title>
            <p id="status">connecting</p>
            <ul id="events"></ul>
            <script src="/js/pusher.min.js"></script>
            <script src="/js/echo.iife.js"></script>
            <script>
            const params = new URLSearchParams(location.search);
            const echo = new Echo.default({
                broadcaster: 'pusher', key: {$key}, cluster: 'mt1',
                wsHost: location.hostname, wsPort: Number(location.port), forceTLS: false, enabledTransports: ['ws'],
                auth: { headers: { 'X-Token': params.get('token') || '' } },
            });
            window.received = [];
            const show = (channel) => (e) => {
                window.received.push({ ...e, listener: channel });
                const li = document.createElement('li');
                li.textContent = channel + ': ' + e.message;
                document.getElementById('events').append(li);
            };
            echo.channel('orders').listen('OrderShipped', show('orders'));
            echo.private('orders.' + params.get('user')).listen('OrderShipped', show('private'));
            const pusher = echo.connector.pusher;
            const ready = () => ['orders', 'private-orders.' + params.get('user')].every((c) => pusher.channel(c)?.subscribed);
            pusher.connection.bind('error', (e) => document.title = 'error ' + JSON.stringify(e));
            const poll = setInterval(() => {
                if (ready()) {
                    clearInterval(poll);
                    document.getElementById('status').textContent = 'subscribed as ' + echo.socketId();
                }
            }, 20);
            </script>
            HTML;
    }
}
