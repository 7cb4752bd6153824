<?php

// The app's published config/surge.php (php artisan vendor:publish --tag=surge-config), with
// the handler of this test app (and, for the tests of config errors, a misspelt key).

return [
    'host' => env('SURGE_HOST', '127.0.0.1'),
    'port' => env('SURGE_PORT', 6001),
    'handler' => env('SURGE_HANDLER', App\WebSocket\AppHandler::class),
    'settings' => json_decode(env('SURGE_SETTINGS', '[]'), true),
    // false, as an app turns it off: SURGE_TEST_REDIS_FALSE.
    'redis' => env('SURGE_TEST_REDIS_FALSE') ? false : [
        'enabled' => env('SURGE_REDIS', true),
        'connection' => env('SURGE_REDIS_CONNECTION'),
        'channels' => ['*'],
    ] + (env('SURGE_TEST_MISSPELT_REDIS') ? [env('SURGE_TEST_MISSPELT_REDIS') => false] : []),
    'pusher' => [
        'webhooks' => json_decode(env('SURGE_TEST_WEBHOOKS', '[]'), true),
    ],
] + (env('SURGE_TEST_MISSPELT') ? [env('SURGE_TEST_MISSPELT') => []] : []);
