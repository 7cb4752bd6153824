<?php

namespace Surge\Laravel\Support;

use Illuminate\Contracts\Foundation\Application;

/**
 * What the running surge:serve tells other artisan commands (surge:reload): its master's pid
 * and its processes, in storage/framework/surge.json while it serves.
 */
final class ServerState
{
    public static function path(Application $app): string
    {
        return $app->storagePath().'/framework/surge.json';
    }

    public static function write(Application $app, \Surge\WebSocket\Server $server, array $settings): void
    {
        file_put_contents(self::path($app), json_encode([
            'pid' => $server->master_pid,
            'host' => $server->host,
            'port' => $server->port,
            'workers' => (int) ($settings['worker_num'] ?? 1),
            'task_workers' => (int) ($settings['task_worker_num'] ?? 0),
        ]));
    }

    public static function forget(Application $app): void
    {
        @unlink(self::path($app));
    }

    /** @return array{pid: int, host: string, port: int, workers: int, task_workers: int}|null */
    public static function read(Application $app): ?array
    {
        $text = @file_get_contents(self::path($app));
        $state = $text === false ? null : json_decode($text, true);

        return is_array($state) && is_int($state['pid'] ?? null) ? $state : null;
    }
}
