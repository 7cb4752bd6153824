<?php
/**
 * Push by page (seed 004) on Surge: the back end pushes to the browsers that show a given page.
 *
 *   php -d extension=/path/to/surge.so php/examples/push-by-page/server.php
 *
 * Open http://127.0.0.1:9502/home and http://127.0.0.1:9502/list in browser tabs, then press the
 * buttons on http://127.0.0.1:9502/back. SURGE_HOST and SURGE_PORT change the address.
 *
 * Pages connect with ws://host:port/?page=home&token=123456; a connection without the right
 * token is closed (4001). An HTTP request /?func=pushHomeLogic&token=123456 (or pushListLogic)
 * pushes to the connections whose page matches. Everything runs on one port.
 */

const TOKEN = '123456';

/**
 * JSON with <, >, &, ' and " escaped, so a page may put it anywhere (the article's xss_json()).
 */
function xss_json(array $data): string
{
    return json_encode($data, JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT | JSON_UNESCAPED_UNICODE);
}

class SurgeDemo
{
    /**
     * What ?func= may call. The article calls any method that exists, which would let an HTTP
     * request call onClose() or handle(); a list keeps it to the push logic.
     */
    private const FUNCS = ['pushHomeLogic', 'pushListLogic'];

    private static ?Surge\WebSocket\Server $server = null;
    /**
     * fd => ['page' => ..., 'fd' => ...] for every connection that passed the token check (the
     * article keeps this in the Redis hash swoole:fds).
     */
    private array $fds = [];
    /** path => [content type, body] */
    private array $pages;

    public function __construct()
    {
        // The home and list pages are one template; the back page has the buttons.
        $html = 'text/html; charset=utf-8';
        $template = file_get_contents(__DIR__ . '/page.html');
        $page = fn(string $name, string $title) => [$html, strtr($template, ['{{page}}' => $name, '{{title}}' => $title, '{{token}}' => TOKEN])];
        $back = [$html, strtr(file_get_contents(__DIR__ . '/back.html'), ['{{token}}' => TOKEN])];
        $this->pages = [
            '/' => $back,
            '/back' => $back,
            '/home' => $page('home', 'Home page'),
            '/list' => $page('list', 'List page'),
            '/style.css' => ['text/css; charset=utf-8', file_get_contents(__DIR__ . '/style.css')],
        ];
    }

    public function handle(): void
    {
        $server = self::getWebSocketServer();
        $server->on('start', [$this, 'onStart']);
        $server->on('open', [$this, 'onOpen']);
        $server->on('message', [$this, 'onMessage']);
        $server->on('close', [$this, 'onClose']);
        $server->on('request', [$this, 'onRequest']);
        $server->start();
    }

    public static function getWebSocketServer(): Surge\WebSocket\Server
    {
        if (!(self::$server instanceof Surge\WebSocket\Server)) {
            self::setWebSocketServer();
        }
        return self::$server;
    }

    protected static function setWebSocketServer(): void
    {
        self::$server = new Surge\WebSocket\Server(getenv('SURGE_HOST') ?: '127.0.0.1', (int) (getenv('SURGE_PORT') ?: 9502));
        self::$server->set([
            'worker_num' => 1,
            'heartbeat_check_interval' => 60, // look for idle connections every 60 s
            'heartbeat_idle_time' => 121,     // and drop those silent for 121 s
        ]);
    }

    public function onStart(Surge\WebSocket\Server $server): void
    {
        $base = "http://{$server->host}:{$server->port}";
        $this->line("push-by-page server started: open $base/home and $base/list, press the buttons on $base/back");
    }

    public function onOpen(Surge\WebSocket\Server $server, Surge\Http\Request $request): void
    {
        if (!$this->checkAccess($request)) {
            $server->disconnect($request->fd, 4001, 'missing or invalid token');
            return;
        }
        $this->storeUrlParam($request);
        $server->push($request->fd, xss_json(['code' => 200, 'message' => 'connected to the push server']));
    }

    public function onMessage(Surge\WebSocket\Server $server, Surge\WebSocket\Frame $frame): void
    {
        // The pages send "heartbeat" after a minute without news and reconnect if no answer comes.
        if ($frame->data === 'heartbeat') {
            $server->push($frame->fd, xss_json(['code' => 204, 'message' => 'heartbeat']));
        }
    }

    /**
     * The pages (/home, /list, /back) and the trigger: /?func=pushHomeLogic&token=123456.
     */
    public function onRequest(Surge\Http\Request $request, Surge\Http\Response $response): void
    {
        $param = $request->get;
        if (!isset($param['func'])) {
            $this->servePage($request->server['request_uri'], $response);
        } elseif (!$this->checkAccess($request)) {
            $this->reply($response, 403, 'missing or invalid token');
        } elseif (!in_array($param['func'], self::FUNCS, true)) {
            $this->reply($response, 404, 'unknown func; use ' . implode(' or ', self::FUNCS));
        } else {
            $pushed = call_user_func([$this, $param['func']], $request);
            $this->reply($response, 200, "pushed to $pushed connection(s)", ['pushed' => $pushed]);
        }
    }

    public function onClose(Surge\WebSocket\Server $server, int $fd): void
    {
        unset($this->fds[$fd]);
        $this->line("client {$fd} closed");
    }

    /**
     * Whether the request (a WebSocket handshake or an HTTP trigger) carries the right token.
     */
    public function checkAccess(Surge\Http\Request $request): bool
    {
        $token = $request->get['token'] ?? null;
        if ($token === null) {
            $this->line("request {$request->fd}: no token");
            return false;
        }
        if (!hash_equals(TOKEN, (string) $token)) {
            $this->line("request {$request->fd}: wrong token");
            return false;
        }
        return true;
    }

    /**
     * Remembers which page opened the connection.
     */
    public function storeUrlParam(Surge\Http\Request $request): void
    {
        $this->fds[$request->fd] = [
            'page' => (string) ($request->get['page'] ?? ''),
            'fd' => $request->fd,
        ];
    }

    /**
     * Calls $callback($content, $fd, $this) for every established connection; returns how many
     * calls returned true.
     */
    public function eachFdLogic(Closure $callback): int
    {
        $count = 0;
        foreach (self::$server->connections as $fd) {
            if (self::$server->isEstablished($fd)) {
                $count += (int) $callback($this->fds[$fd] ?? null, $fd, $this);
            } else {
                unset($this->fds[$fd]);
            }
        }
        return $count;
    }

    public function pushHomeLogic(Surge\Http\Request $request): int
    {
        return $this->pushToPage('home', 'the back end pressed button 1');
    }

    public function pushListLogic(Surge\Http\Request $request): int
    {
        return $this->pushToPage('list', 'the back end pressed button 2');
    }

    private function pushToPage(string $page, string $message): int
    {
        return $this->eachFdLogic(function (?array $aContent, int $fd) use ($page, $message): bool {
            if ($aContent && $aContent['page'] == $page) {
                return self::$server->push($fd, xss_json(['code' => 200, 'message' => $message]));
            }
            return false;
        });
    }

    private function servePage(string $path, Surge\Http\Response $response): void
    {
        if (!isset($this->pages[$path])) {
            $response->status(404);
            $response->header('Content-Type', 'text/plain; charset=utf-8');
            $response->end("Not found. The pages are /home, /list and /back.\n");
            return;
        }
        [$type, $body] = $this->pages[$path];
        $response->header('Content-Type', $type);
        $response->end($body);
    }

    private function reply(Surge\Http\Response $response, int $code, string $message, array $extra = []): void
    {
        $response->status($code);
        $response->header('Content-Type', 'application/json');
        $response->end(xss_json(['code' => $code, 'message' => $message] + $extra));
    }

    private function line(string $text): void
    {
        echo $text, "\n";
    }
}

(new SurgeDemo())->handle();
