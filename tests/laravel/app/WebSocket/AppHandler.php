<?php

namespace App\WebSocket;

use App\Facades\Scoped;
use App\Models\User;
use Illuminate\Contracts\Auth\Authenticatable;
use Illuminate\Database\QueryException;
use Illuminate\Support\Facades\Cache;
use Illuminate\Support\Facades\Cookie;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Log;
use Illuminate\Support\Facades\Redis;
use Illuminate\Support\Facades\URL;
use Surge\Http\Request;
use Surge\Laravel\ChannelHandler;
use Surge\Laravel\Contracts\HandlesTasks;
use Surge\WebSocket\Frame;
use Surge\WebSocket\Server;

/**
 * The test app's handler: the default channel protocol, users from ?token= in the SQLite
 * database, and a chat room: {"say": text} goes to everyone in "chat" but the sender, with the
 * sender's name and how many messages they sent (counted in the cache). {"task": text} is
 * run in a task worker (with task_worker_num), which answers with what it saw.
 */
class AppHandler extends ChannelHandler implements HandlesTasks
{
    /** The database connection the command's process opened, before any worker was forked. */
    private ?\PDO $parentPdo;

    /** The connection object itself, kept as a handler that asks for one in its constructor
     * (or Laravel 8's database cache store, made by every artisan command) keeps it. */
    private \Illuminate\Database\ConnectionInterface $db;

    /** The default Redis connection object, if Redis was up, as a service made at boot keeps it. */
    private ?object $heldRedis = null;

    public function __construct()
    {
        $this->db = DB::connection();
        $this->parentPdo = $this->db->getPdo();
        try {
            $this->heldRedis = Redis::connection();
            $this->heldRedis->client()->ping();
        } catch (\RedisException) {
            // A test starts the app without Redis: nothing to compare with then.
        }
    }

    protected function user(Request $request): ?Authenticatable
    {
        $token = request()->query('token'); // request() is the handshake during onOpen
        return $token === null ? null : User::where('token', $token)->first();
    }

    public function onOpen(Server $server, Request $request): void
    {
        if (request()->query('fail') !== null) {
            throw new \RuntimeException('onOpen failed on purpose');
        }
        parent::onOpen($server, $request);
        $server->join($request->fd, 'chat');
        $this->send($server, $request->fd, 'welcome', null, [
            'app' => config('app.name'),
            'user' => $this->users[$request->fd]->name ?? null,
            'secure' => request()->secure(),
        ]);
    }

    public function onMessage(Server $server, Frame $frame): void
    {
        // Nothing of the previous callback (maybe another user's) may be visible here.
        $this->leaked[$frame->fd] = auth()->check() || request()->query('token') !== null;
        parent::onMessage($server, $frame);
    }

    /** @var array<int, bool> */
    private array $leaked = [];

    protected function message(Server $server, Frame $frame, array $message): void
    {
        $fd = $frame->fd;
        $user = auth()->user();
        if (isset($message['whoami'])) {
            $this->send($server, $fd, 'whoami', null, [
                'user' => $user?->name,
                'clean' => ! $this->leaked[$fd],
                'said' => $user ? (int) Cache::get("said:{$user->id}", 0) : 0,
            ]);
        } elseif (isset($message['say']) && is_string($message['say'])) {
            if ($user) {
                Cache::increment("said:{$user->id}");
            }
            $server->publish('chat', json_encode(['event' => 'chat', 'data' => [
                'from' => $user?->name ?? 'guest',
                'text' => htmlspecialchars($message['say'], ENT_QUOTES),
            ]]), [$fd]);
        } elseif (isset($message['pdo'])) {
            // Each worker process must have connections of its own, not its parent's sockets.
            $redis = Redis::connection()->client();
            $this->send($server, $fd, 'pdo', null, [
                'parents' => DB::connection()->getPdo() === $this->parentPdo,
                'pid' => getmypid(),
                'redis_id' => $redis->client('id'),
                'held_redis_id' => $this->heldRedis?->client()->client('id'),
                // The database the server has the connection on (phpredis's own getDbNum()
                // says what it was told, not what the connection is on).
                'held_redis_db' => preg_match('/ db=(\d+)/', (string) $this->heldRedis?->client()->rawCommand('CLIENT', 'INFO'), $m) ? (int) $m[1] : null,
            ]);
        } elseif (isset($message['held'])) {
            $this->send($server, $fd, 'held', null, ['n' => $this->db->selectOne('select count(*) as n from users')->n]);
        } elseif (isset($message['task']) && is_string($message['task'])) {
            $server->task(['fd' => $fd, 'user' => $user?->name, 'text' => $message['task']]);
        } elseif (isset($message['leak'])) {
            // Per-callback state a careless handler changes; the next callback must not see it.
            app(\Illuminate\Contracts\Auth\Guard::class)->setUser(User::where('name', $message['leak'])->firstOrFail());
            app()->setLocale('fr');
            config(['app.name' => 'Changed', 'hashing.driver' => 'argon']);
            app('hash'); // a manager made now keeps the configuration object it was given
            app('surge.scoped')->append('leaked');
            Scoped::append('leaked through the facade');
            // What tenant and locale middleware do to links.
            URL::defaults(['tenant' => 'acme']);
            URL::forceRootUrl('http://acme.example.com');
            Cache::store('array')->put('tenant', 'acme');
            Log::withContext(['acting_user' => $message['leak']]);
            Cookie::queue('remember', 'a secret of '.$message['leak']);
            DB::enableQueryLog();
            User::count();
            // A tenant's database, as multi-tenant apps switch to one.
            touch($tenant = storage_path('tenant.sqlite'));
            config(['database.connections.sqlite.database' => $tenant]);
            DB::purge('sqlite');
            DB::connection('sqlite')->getPdo();
            $this->send($server, $fd, 'leaked', null, ['guard' => app(\Illuminate\Contracts\Auth\Guard::class)->user()?->name]);
        } elseif (isset($message['state'])) {
            $this->send($server, $fd, 'state', null, [
                'guard' => app(\Illuminate\Contracts\Auth\Guard::class)->user()?->name,
                'locale' => app()->getLocale(),
                'name' => config('app.name'),
                'hash' => app('hash')->getDefaultDriver(),
                'scoped' => count(app('surge.scoped')),
                'scoped_facade' => count(Scoped::getFacadeRoot()),
                'url_defaults' => URL::getDefaultParameters(),
                'array_cache' => Cache::store('array')->get('tenant'),
                'url' => url('/orders/1'),
                'secure' => request()->secure(),
                'log_context' => (fn () => $this->context)->call(Log::driver()),
                'queued_cookies' => count(Cookie::getQueuedCookies()),
                'query_log' => count(DB::getQueryLog()),
                'database' => basename(DB::connection('sqlite')->getDatabaseName()),
                'users' => User::count(),
                // Guards each register for the next request; a leak piles them up here.
                'request_rebindings' => count((fn () => $this->reboundCallbacks['request'] ?? [])->call(app())),
            ]);
        } elseif (isset($message['begin'])) {
            DB::beginTransaction(); // and "forget" to commit: the next callback must not be in it
            User::where('name', $message['begin'])->update(['name' => 'renamed']);
        } elseif (isset($message['gone'])) {
            // What PDO throws when MySQL dropped an idle connection.
            throw new QueryException('select 1', [], new \PDOException('SQLSTATE[HY000]: General error: 2006 MySQL server has gone away'));
        } else {
            parent::message($server, $frame, $message);
        }
    }

    public function onTask(Server $server, int $taskId, int $srcWorkerId, mixed $data): mixed
    {
        return $data + [
            'text_upper' => strtoupper($data['text']),
            'users' => User::count(),
            'signed_in' => auth()->check(),
            'taskworker' => $server->taskworker,
            'pid' => getmypid(),
            'src' => $srcWorkerId,
        ];
    }

    public function onFinish(Server $server, int $taskId, mixed $result): void
    {
        $this->send($server, $result['fd'], 'task', null, $result + ['worker' => $server->worker_id]);
    }

    public function onClose(Server $server, int $fd): void
    {
        unset($this->leaked[$fd]);
        parent::onClose($server, $fd);
    }
}
