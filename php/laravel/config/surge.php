<?php

// Surge: the WebSocket server run by `php artisan surge:serve`.
// Publish with: php artisan vendor:publish --tag=surge-config

return [

    // Where the server listens; `--host` and `--port` on the command line win.
    'host' => env('SURGE_HOST', '0.0.0.0'),
    'port' => (int) env('SURGE_PORT', 6001),

    // The class that answers WebSocket connections (and plain HTTP, if it implements
    // Surge\Laravel\Contracts\HandlesHttp). It is resolved from the container, so its
    // constructor can ask for Laravel services. The default speaks a small channel protocol:
    // {"subscribe": "orders"}, {"unsubscribe": "orders"}; see README "Use it from Laravel".
    'handler' => env('SURGE_HANDLER', Surge\Laravel\ChannelHandler::class),

    // Passed as is to Surge\WebSocket\Server::set(): worker_threads, max_connection,
    // package_max_length, heartbeat_idle_time, ping_interval, log_level, ...
    // An unknown key or a bad value stops surge:serve with a message naming it.
    'settings' => [
        // 'log_level' => 'info',
        // Serve public/ (scripts, styles, images) without calling PHP, as Swoole's static handler:
        // 'enable_static_handler' => true, 'document_root' => public_path(),
    ],

    // The native Redis bridge: Laravel's redis broadcaster PUBLISHes, Surge subscribes and
    // pushes each event to the WebSocket clients that joined the channel, with no PHP code.
    // Host, port, password, database and prefix come from config/database.php ('redis').
    'redis' => [
        'enabled' => env('SURGE_REDIS', true),
        // The connection in database.redis; null: the one the redis broadcaster uses.
        'connection' => env('SURGE_REDIS_CONNECTION'),
        // Broadcast channels to forward: names as in broadcastOn() ('orders',
        // 'private-orders.1', 'presence-room.*'); '*' forwards every channel.
        'channels' => ['*'],
    ],

    // The Pusher protocol, so Laravel Echo + pusher-js and BROADCAST_DRIVER=pusher work by
    // pointing them at Surge: apps (app_id, key, secret) are read from these connections in
    // config/broadcasting.php (those with an empty key are skipped). 'settings' => ['pusher'
    // => [...]] above replaces this. Options: client_events, client_event_rate,
    // max_connections, activity_timeout, presence_max_members, presence_max_member_size,
    // max_channels_per_connection (README "Pusher protocol"). Webhooks, as Pusher's, for every
    // app: e.g. [['url' => env('APP_URL').'/pusher/webhook', 'event_types' => ['member_added',
    // 'member_removed']]] (README "Pusher protocol", webhooks).
    'pusher' => [
        'enabled' => env('SURGE_PUSHER', true),
        'connections' => ['pusher', 'reverb'],
        'options' => [],
        'webhooks' => [],
    ],

];
