// Starts laravel-echo-server 1.6.3 for bench/run.sh: node les.js PORT REDIS_PORT.
// Public channels only, Redis subscriber with Laravel's "laravel_database_" prefix, API client
// les / bench-key (for GET /apps/les/channels/bench), bound to 127.0.0.1. One change from the
// defaults: engine.io 3 closes a connection that has not pinged for pingInterval + pingTimeout
// (25 + 20 s) and surge-load's clients do not ping, while 19k connections take about 40 s to
// open on a busy 2-core machine; pingTimeout 120 s keeps the first ones until RSS is measured.
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
    socketio: { pingTimeout: 120000 },
    subscribers: { http: false, redis: true },
});
