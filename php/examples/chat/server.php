<?php
/**
 * A mini chat room (seed 003) on Surge.
 *
 *   php -d extension=/path/to/surge.so php/examples/chat/server.php
 *
 * then open http://127.0.0.1:9501/ in two browser tabs (add ?name=Ann to pick a name) and the
 * admin page at http://127.0.0.1:9501/admin. SURGE_HOST and SURGE_PORT change the address.
 *
 * The WebSocket server is also the HTTP server: the `request` callback serves the chat page and
 * the admin page on the same port. Messages are HTML-escaped here, once, and pushed to everyone
 * but the sender (the page shows its own messages itself).
 */

class ChatServer
{
    private array $config;
    /**
     * The online users, fd => ['fd' => int, 'name' => string], in a Surge\Table: shared memory
     * that processes forked after create() share, as Swoole's worker processes share a
     * Swoole\Table. Read with get(), foreach and count(), like the array it replaces.
     */
    private Surge\Table $table;
    private Surge\WebSocket\Server $server;
    private string $page;

    /**
     * @param array $config ['host' => '', 'port' => 0]
     */
    public function __construct(array $config)
    {
        $this->createTable();
        $this->config = $config;
        $this->page = file_get_contents(__DIR__ . '/index.html');
    }

    public function run(): void
    {
        $this->server = new Surge\WebSocket\Server($this->config['host'], $this->config['port']);
        $this->server->set([
            // The same code serves with several worker processes (CHAT_WORKERS=4): the table is
            // shared with them, and push() reaches a user whichever worker holds the connection.
            'worker_num' => (int) (getenv('CHAT_WORKERS') ?: 1),
            'package_max_length' => 64 * 1024,
            // Browsers offer permessage-deflate; long messages then travel compressed.
            'websocket_compression' => true,
        ]);

        $this->server->on('start', [$this, 'start']);
        $this->server->on('open', [$this, 'open']);
        $this->server->on('message', [$this, 'message']);
        $this->server->on('close', [$this, 'close']);
        $this->server->on('request', [$this, 'request']);

        $this->server->start();
    }

    public function start(Surge\WebSocket\Server $server): void
    {
        $host = in_array($this->config['host'], ['0.0.0.0', '::'], true) ? '127.0.0.1' : $this->config['host'];
        echo "Surge chat room: open http://{$host}:{$server->port}/ in two browser tabs (admin: /admin; Ctrl-C stops)\n";
    }

    public function open(Surge\WebSocket\Server $server, Surge\Http\Request $request): void
    {
        $user = [
            'fd' => $request->fd,
            'name' => $this->nameFor($request),
        ];
        try {
            $this->table->set($request->fd, $user);
        } catch (Surge\Exception $e) {
            // The table is full (it holds exactly its size): say so instead of a half-join.
            $server->disconnect($request->fd, 4000, 'the room is full');
            return;
        }

        $server->push($request->fd, json_encode(
            array_merge(['user' => $user], ['all' => $this->allUser()], ['type' => 'openSuccess'])
        ));
        $this->pushMessage($server, "{$user['name']} joined", 'open', $request->fd);
    }

    /**
     * The name asked for with ?name= when it is plain (letters, digits, space, `_.-`), or S<fd>
     * as in the article; either way it needs no escaping.
     */
    private function nameFor(Surge\Http\Request $request): string
    {
        $name = trim($request->get['name'] ?? '');
        return preg_match('/^[\p{L}\p{N} _.-]{1,20}$/u', $name) ? $name : 'S' . $request->fd;
    }

    private function allUser(): array
    {
        $users = [];
        foreach ($this->table as $row) {
            $users[] = $row;
        }
        return $users;
    }

    public function message(Surge\WebSocket\Server $server, Surge\WebSocket\Frame $frame): void
    {
        if (trim($frame->data) === '') {
            return;
        }
        $this->pushMessage($server, $frame->data, 'message', $frame->fd);
    }

    /**
     * Pushes a message, HTML-escaped, to every user but $fd.
     */
    private function pushMessage(Surge\WebSocket\Server $server, string $message, string $type, int $fd): void
    {
        $message = htmlspecialchars($message);
        $user = $this->table->get($fd) ?: null;
        $json = json_encode([
            'type' => $type,
            'message' => $message,
            'datetime' => date('Y-m-d H:i:s'),
            'timestamp' => time(),
            'user' => $user,
        ]);

        foreach ($this->table as $item) {
            // Not to the sender: the page shows what it sent itself.
            if ($item['fd'] == $fd) {
                continue;
            }
            $server->push($item['fd'], $json);
        }
    }

    public function close(Surge\WebSocket\Server $server, int $fd): void
    {
        $user = $this->table->get($fd);
        if ($user === false) {
            return;
        }
        $this->pushMessage($server, "{$user['name']} left", 'close', $fd);
        $this->table->del($fd);
    }

    /**
     * HTTP on the same port: the chat page at /, the admin page at /admin.
     */
    public function request(Surge\Http\Request $request, Surge\Http\Response $response): void
    {
        $body = match ($request->server['request_uri']) {
            '/' => $this->page,
            '/admin' => $this->adminPage(),
            default => null,
        };
        if ($body === null) {
            $response->status(404);
            $response->header('Content-Type', 'text/plain; charset=utf-8');
            $response->end("Not found. The chat is at / and the admin page at /admin.\n");
            return;
        }
        $response->header('Content-Type', 'text/html; charset=utf-8');
        $response->header('Cache-Control', 'no-store');
        $response->end($body);
    }

    private function adminPage(): string
    {
        $e = fn($v) => htmlspecialchars((string) $v);
        $now = time();
        $rows = '';
        foreach ($this->table as $user) {
            $info = $this->server->getClientInfo($user['fd']);
            if ($info === false) {
                continue;
            }
            $rows .= sprintf(
                "<tr><td>%d</td><td>%s</td><td>%s:%d</td><td>%s ago</td><td>%s ago</td></tr>\n",
                $user['fd'], $e($user['name']), $e($info['remote_ip']), $info['remote_port'],
                $this->ago($now - $info['connect_time']), $this->ago($now - $info['last_time'])
            );
        }
        $rows = $rows ?: "<tr><td colspan=\"5\" class=\"none\">nobody is online</td></tr>\n";

        $stats = $this->server->stats();
        $stats['uptime'] = $this->ago($now - $stats['start_time']);
        $statRows = '';
        foreach (['uptime', 'connections', 'accepted', 'closed', 'messages_in', 'messages_out', 'bytes_in', 'bytes_out', 'http_requests'] as $key) {
            $statRows .= "<tr><th>{$e(str_replace('_', ' ', $key))}</th><td>{$e($stats[$key])}</td></tr>\n";
        }
        $online = count($this->table);

        return <<<HTML
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta http-equiv="refresh" content="5">
        <title>Surge chat · admin</title>
        <style>
          body { font: 14px/1.5 system-ui, sans-serif; color: #1f2937; max-width: 760px; margin: 32px auto; padding: 0 16px; }
          h1 { font-size: 20px; } h2 { font-size: 15px; margin-top: 28px; color: #4b5563; }
          table { border-collapse: collapse; width: 100%; }
          th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; }
          thead th { color: #6b7280; font-weight: 600; }
          #stats { width: auto; min-width: 320px; } #stats th { font-weight: 500; color: #4b5563; padding-right: 64px; }
          .none { color: #9ca3af; font-style: italic; }
        </style>
        </head>
        <body>
        <h1>Chat room admin</h1>
        <h2>Online users ({$online})</h2>
        <table id="users">
        <thead><tr><th>fd</th><th>name</th><th>address</th><th>connected</th><th>last active</th></tr></thead>
        <tbody>
        {$rows}</tbody>
        </table>
        <h2>Server</h2>
        <table id="stats">
        {$statRows}</table>
        <p class="none">Refreshes every 5 seconds. <a href="/">Back to the chat</a></p>
        </body>
        </html>
        HTML;
    }

    private function ago(int $seconds): string
    {
        return match (true) {
            $seconds < 60 => "{$seconds}s",
            $seconds < 3600 => intdiv($seconds, 60) . 'm ' . $seconds % 60 . 's',
            default => intdiv($seconds, 3600) . 'h ' . intdiv($seconds % 3600, 60) . 'm',
        };
    }

    /**
     * Where the users live: 1024 rows of fd and name (a name of 20 characters is at most 80
     * bytes), 385,088 bytes of shared memory (getMemorySize()).
     */
    private function createTable(): void
    {
        $this->table = new Surge\Table(1024);
        $this->table->column('fd', Surge\Table::TYPE_INT);
        $this->table->column('name', Surge\Table::TYPE_STRING, 255);
        $this->table->create();
    }
}

(new ChatServer([
    'host' => getenv('SURGE_HOST') ?: '127.0.0.1',
    'port' => (int) (getenv('SURGE_PORT') ?: 9501),
]))->run();
