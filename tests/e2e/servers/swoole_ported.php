<?php
// A chat server written as Swoole code is written (a class of handlers, Swoole's constructor
// arguments and settings, fds as the string keys of a table, Swoole's method names), with only
// `Swoole\` renamed: what a user porting an article's code runs first.

use Surge\Table;
use Surge\Timer;
use Surge\WebSocket\Server;

class Chat
{
    private Table $users;
    private int $beats = 0;
    /** A request kept unanswered (/hold), and its fd. */
    private $held = null;
    private int $heldFd = 0;

    public function __construct(private Server $server)
    {
        $this->users = new Table('1024');
        $this->users->column('fd', Table::TYPE_INT);
        $this->users->column('name', Table::TYPE_STRING, 64);
        $this->users->column('joined', Table::TYPE_STRING, 16);
        $this->users->create();
    }

    public function onWorkerStart(Server $server, int $workerId): void
    {
        $role = $workerId >= $server->setting['worker_num'] ? 'task worker' : 'worker';
        echo "workerStart $workerId as $role\n";
        // Swoole\Timer's static API, as articles use it for heartbeats and delayed work.
        Timer::tick(20, function (int $timerId, string $what) {
            $this->beats++;
        }, 'beat');
    }

    public function onOpen(Server $server, $request): void
    {
        if (($request->get['token'] ?? '') !== 'secret') {
            $server->disconnect($request->fd, WEBSOCKET_CLOSE_POLICY_ERROR, 'bad token');
            return;
        }
        // Values as a query string gives them: strings, into an INT column too; time() into a
        // STRING one.
        $this->users->set($request->fd, ['fd' => (string) $request->fd, 'name' => $request->get['name'], 'joined' => time()]);
    }

    public function onMessage(Server $server, $frame): void
    {
        $from = $this->users->get($frame->fd, 'name');
        match ($frame->data) {
            'who' => $server->push($frame->fd, json_encode($this->names()), WEBSOCKET_OPCODE_TEXT, true),
            'pages' => $server->push($frame->fd, json_encode($this->pages())),
            'ping' => $server->ping($frame->fd),
            'where' => $server->push($frame->fd, json_encode($server->getClientInfo($frame->fd, -1, true)['remote_ip'])),
            'timers' => $this->timers($server, $frame->fd),
            'beats' => $server->push($frame->fd, (string) $this->beats),
            'stats' => $server->push($frame->fd, json_encode(array_intersect_key($server->stats(), array_flip(['worker_num', 'task_worker_num', 'request_count'])))),
            default => $this->toEveryone($server, "$from: {$frame->data}"),
        };
    }

    public function onClose(Server $server, int $fd, int $reactorId): void
    {
        if ($this->users->exist($fd)) {
            $name = $this->users->get($fd, 'name');
            $this->users->delete($fd);
            $this->toEveryone($server, "$name left");
        }
    }

    private function toEveryone(Server $server, string $message): void
    {
        foreach ($this->users as $fd => $row) {
            // $fd is a string key ('7'), as in Swoole.
            $server->push($fd, $message, WEBSOCKET_OPCODE_TEXT, SWOOLE_WEBSOCKET_FLAG_FIN);
        }
    }

    // A delayed answer, then what the timer ids say: the static API and the server's share them.
    private function timers(Server $server, int $fd): void
    {
        $ticks = Timer::list();
        $once = Timer::after(30, function (string $text) use ($server, $fd) {
            $server->push($fd, $text);
        }, 'later');
        $gone = $server->tick(1000, fn () => null);
        $report = [
            'ticks' => count($ticks),
            'once' => Timer::exists($once),
            'cleared' => Timer::clear($gone),
            'again' => $server->clearTimer($gone),
            'left' => Timer::list() === [...$ticks, $once],
        ];
        $server->push($fd, json_encode($report));
    }

    public function onRequest($request, $response): void
    {
        $server = $this->server;
        switch ($request->server['request_uri']) {
            // Who asks, as articles log it, while the request is answered and after.
            case '/who':
                $asked = [$server->getClientInfo($request->fd), $server->exist($request->fd), $server->isEstablished($request->fd)];
                $response->end(json_encode($asked));
                echo 'after end: ', json_encode([$server->getClientInfo($request->fd), $server->exist($request->fd)]), "\n";
                return;
            // Article 004's refusal of a request without its token: the connection is closed
            // and nothing answered ($reset is Swoole's).
            case '/refuse':
                echo 'closed: ', json_encode([$server->close($request->fd, true), $server->close($request->fd)]), "\n";
                return;
            // A body under way: cut short, the client sees it incomplete.
            case '/cut':
                $response->write('part');
                $server->close($request->fd);
                return;
            // A response kept for later, as long polling does; /held asks after its client.
            case '/hold':
                [$this->held, $this->heldFd] = [$response, $request->fd];
                echo "holding\n";
                return;
            case '/held':
                $response->end(json_encode([$server->exist($this->heldFd), $server->getClientInfo($this->heldFd) !== false, $this->held->isWritable()]));
                return;
            case '/throw':
                throw new RuntimeException('no such page');
        }
        $response->setCookie('seen', 'a b', 0, '/', '', false, true);
        $response->setRawCookie('raw', 'a%20b');
        $response->end('cookies');
    }

    private function names(): array
    {
        $names = array_column(iterator_to_array($this->users, false), 'name');
        sort($names);
        return $names;
    }

    // The established connections, two at a time, as older articles page through them.
    private function pages(): array
    {
        $pages = [];
        $start = 0;
        while (($list = $this->server->getClientList($start, 2)) !== false) {
            $pages[] = $list;
            $start = end($list);
        }
        return $pages;
    }
}

$server = new Server('127.0.0.1', getenv('SURGE_PORT'), SWOOLE_PROCESS, SWOOLE_SOCK_TCP);
$server->set([
    'worker_num' => '1',
    'daemonize' => false,
    'dispatch_mode' => 2,
    'enable_coroutine' => false,
    'max_conn' => 1000,
    'log_level' => SWOOLE_LOG_INFO,
]);
$chat = new Chat($server);
foreach (['WorkerStart', 'Open', 'Message', 'Close', 'Request'] as $event) {
    $server->on($event, [$chat, "on$event"]);
}
$server->start();
