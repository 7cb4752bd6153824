<?php
/**
 * Proxy Laravel's broadcasts to WebSocket clients (seed 000) on Surge.
 *
 *   php -d extension=/path/to/surge.so php/examples/laravel-broadcast-proxy/server.php
 *
 * SURGE_HOST and SURGE_PORT change the address (default 0.0.0.0:9527), SURGE_REDIS the Redis
 * server (default redis://127.0.0.1:6379), SURGE_REDIS_PREFIX Laravel's Redis prefix (default
 * laravel_database_; set it to '' for an application without one).
 *
 * Laravel, with BROADCAST_DRIVER=redis, PUBLISHes every ShouldBroadcast event to Redis as
 * {"event": ..., "data": ..., "socket": ...} on "<prefix><channel>". A page connects and sends
 * {"channel": "message", "event": "Message"}, as in the article; the server joins it to the Surge
 * channel "message". Surge itself is subscribed to every Laravel channel (the article's
 * `PSUBSCRIBE *`) and forwards each broadcast to the members of the channel of the same name, as
 * {"event": ..., "channel": ..., "data": ...}: no task worker, no blocking Redis::psubscribe, no
 * PHP loop over the connections. A broadcast on a channel nobody joined goes nowhere.
 *
 * On open, each page gets {"event": "connected", "socket_id": "..."}: send it to Laravel as the
 * X-Socket-ID header and `broadcast(new Message($data))->toOthers()` leaves that page out.
 */

class BroadcastProxy
{
    private Surge\WebSocket\Server $server;

    public function __construct(private string $host, private int $port, private string $redis, private string $prefix)
    {
    }

    public function handle(): void
    {
        $this->server = new Surge\WebSocket\Server($this->host, $this->port);
        $this->server->set([
            'redis' => $this->redis,
            'redis_prefix' => $this->prefix,
            'redis_forward' => true,
        ]);
        $this->server->subscribe('*');

        $this->server->on('start', [$this, 'onStart']);
        $this->server->on('open', [$this, 'onOpen']);
        $this->server->on('message', [$this, 'onMessage']);
        $this->server->start();
    }

    public function onStart(Surge\WebSocket\Server $server): void
    {
        echo "Laravel broadcast proxy on ws://{$this->host}:{$server->port}, subscribed to {$this->redis} ({$this->prefix}*)\n";
    }

    public function onOpen(Surge\WebSocket\Server $server, Surge\Http\Request $request): void
    {
        $server->push($request->fd, json_encode(['event' => 'connected', 'socket_id' => $server->socketId($request->fd)]));
    }

    public function onMessage(Surge\WebSocket\Server $server, Surge\WebSocket\Frame $frame): void
    {
        $data = json_decode($frame->data, true);
        if (!is_string($data['channel'] ?? null) || $data['channel'] === '') {
            $server->push($frame->fd, json_encode(['event' => 'error', 'message' => 'send {"channel": "<name>"}']));
            return;
        }
        // Where the article starts a task that blocks in Redis::psubscribe and loops over every
        // connection for each message, joining the channel is all there is to do.
        $server->join($frame->fd, $data['channel']);
        $server->push($frame->fd, json_encode(['event' => 'subscribed', 'channel' => $data['channel']]));
    }
}

$prefix = getenv('SURGE_REDIS_PREFIX');
(new BroadcastProxy(
    getenv('SURGE_HOST') ?: '0.0.0.0',
    (int) (getenv('SURGE_PORT') ?: 9527),
    getenv('SURGE_REDIS') ?: 'redis://127.0.0.1:6379',
    $prefix === false ? 'laravel_database_' : $prefix,
))->handle();
