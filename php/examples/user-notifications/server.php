<?php
/**
 * Per-user notifications from Laravel (seed 001) on Surge.
 *
 *   php -d extension=/path/to/surge.so php/examples/user-notifications/server.php
 *
 * SURGE_HOST and SURGE_PORT change the address (default 0.0.0.0:9501), SURGE_REDIS the Redis
 * server (default redis://127.0.0.1:6379), SURGE_REDIS_PREFIX Laravel's Redis prefix (default
 * laravel_database_, which the Redis facade adds to the channel; '' for none).
 *
 * A page connects to ws://host:port/?uid=1. On open the server joins it to the channel
 * push:message:1 and subscribes that Redis channel (once per user, however many tabs are open);
 * when the user's last tab closes, it unsubscribes. Laravel publishes as in the article:
 *
 *     Redis::publish('push:message:1', json_encode(['cnt' => $cnt], JSON_UNESCAPED_UNICODE));
 *
 * and the `redis` callback hands the payload, as it is, to that user's tabs: one native publish
 * to the channel, however many tabs, instead of the article's blocking Redis::subscribe inside
 * the open callback (which stops the server from serving anyone else). The article's page
 * (`JSON.parse(event.data).cnt`) works unchanged.
 *
 * Like the article, this trusts ?uid=; a real application checks who the user is (a signed
 * token, or the session cookie through Laravel) before joining their channel.
 */

class UserNotifications
{
    /** fd => uid, to know whose channel may need unsubscribing when a tab closes. */
    private array $uids = [];

    public function __construct(private string $host, private int $port, private string $redis, private string $prefix)
    {
    }

    public function handle(): void
    {
        $server = new Surge\WebSocket\Server($this->host, $this->port);
        $server->set([
            'redis' => $this->redis,
            'redis_prefix' => $this->prefix,
            // The payloads are the application's own JSON, not Laravel broadcasts: PHP hands them on.
            'redis_forward' => false,
        ]);

        $server->on('start', function (Surge\WebSocket\Server $server) {
            echo "User notifications on ws://{$this->host}:{$server->port}/?uid=<user id>, from {$this->redis} ({$this->prefix}push:message:<user id>)\n";
        });

        $server->on('open', function (Surge\WebSocket\Server $server, Surge\Http\Request $request) {
            $uid = $request->get['uid'] ?? '';
            if (!preg_match('/^[0-9]+$/', $uid)) {
                $server->disconnect($request->fd, 4001, 'connect with ?uid=<user id>');
                return;
            }
            $this->uids[$request->fd] = $uid;
            // subscribe messages from redis
            $server->join($request->fd, "push:message:$uid");
            $server->subscribe("push:message:$uid");
        });

        $server->on('redis', function (Surge\WebSocket\Server $server, string $channel, string $message) {
            echo "notify: $channel $message\n";
            $server->publish($channel, $message);
        });

        $server->on('message', function (Surge\WebSocket\Server $server, Surge\WebSocket\Frame $frame) {
            echo "received from {$frame->fd}:{$frame->data}\n";
            $server->push($frame->fd, 'welcome, i heard you.');
        });

        $server->on('close', function (Surge\WebSocket\Server $server, int $fd) {
            echo "client {$fd} closed\n";
            $uid = $this->uids[$fd] ?? null;
            unset($this->uids[$fd]);
            // The closed tab has already left its channel: is any other tab of this user left?
            if ($uid !== null && !$server->members("push:message:$uid")) {
                $server->unsubscribe("push:message:$uid");
            }
        });

        $server->start();
    }
}

$prefix = getenv('SURGE_REDIS_PREFIX');
(new UserNotifications(
    getenv('SURGE_HOST') ?: '0.0.0.0',
    (int) (getenv('SURGE_PORT') ?: 9501),
    getenv('SURGE_REDIS') ?: 'redis://127.0.0.1:6379',
    $prefix === false ? 'laravel_database_' : $prefix,
))->handle();
