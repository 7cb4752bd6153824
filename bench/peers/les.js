// Starts laravel-echo-server 1.6.3 for bench/run.sh: node les.js PORT REDIS_PORT.
// Public channels only, Redis subscriber with Laravel's "laravel_database_" prefix, API client
// les / bench-key (for GET /apps/les/channels/bench), bound to 127.0.0.1.
'use strict';
const [port, redisPort] = process.argv.slice(2);
require('laravel-echo-server').run({
    authHost: 'http://127.0.0.1',
    clients: [{ appId: 'les', key: 'bench-key' }],
    database: 'redis',
    databaseConfig: { redis: { host: '127.0.0.1', port: Number(redisPort), keyPrefix: 'laravel_database_' } },
    devMode: false,
    host: '127.0.0.1',
    port: Number(port),
    protocol: 'http',
    subscribers: { http: false, redis: true },
});
