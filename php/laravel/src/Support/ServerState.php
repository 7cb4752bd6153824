<?php

namespace Surge\Laravel\Support;

use Illuminate\Contracts\Foundation\Application;

/**
 * What a running surge:serve tells other artisan commands (surge:reload): its master's pid and
 * its processes, in storage/framework/surge-PORT.json while it serves. One file per port, so
 * that two servers of one app (on two ports) each keep their own.
 */
final class ServerState
{
    public static function path(Application $app, int $port): string
    {
        return self::directory($app)."/surge-{$port}.json";
    }

    public static function write(Application $app, \Surge\WebSocket\Server $server, array $settings): void
    {
        file_put_contents(self::path($app, $server->port), json_encode([
            'pid' => $server->master_pid,
            'host' => $server->host,
            'port' => $server->port,
            'workers' => (int) ($settings['worker_num'] ?? 1),
            'task_workers' => (int) ($settings['task_worker_num'] ?? 0),
        ]));
    }

    /** Removes this process's file for `$port`: not one another server wrote for that port. */
    public static function forget(Application $app, int $port): void
    {
        if ((self::readFile(self::path($app, $port))['pid'] ?? null) === getmypid()) {
            @unlink(self::path($app, $port));
        }
    }

    /**
     * Every server's state found here, by port.
     *
     * @return array<int, array{pid: int, host: string, port: int, workers: int, task_workers: int}>
     */
    public static function all(Application $app): array
    {
        $states = [];
        foreach (glob(self::pattern($app)) ?: [] as $file) {
            $state = self::readFile($file);
            if ($state !== null && is_int($state['port'] ?? null)) {
                $states[$state['port']] = $state;
            }
        }
        ksort($states);

        return $states;
    }

    /** Whether the state's pid is a surge:serve now (a killed server's may be another process's). */
    public static function running(array $state): bool
    {
        $command = @file_get_contents("/proc/{$state['pid']}/cmdline");

        return $command !== false && str_contains($command, 'surge:serve');
    }

    /** Where the files are, as a shell pattern (for messages too). */
    public static function pattern(Application $app): string
    {
        return self::directory($app).'/surge-*.json';
    }

    private static function directory(Application $app): string
    {
        return $app->storagePath().'/framework';
    }

    private static function readFile(string $file): ?array
    {
        $text = @file_get_contents($file);
        $state = $text === false ? null : json_decode($text, true);

        return is_array($state) && is_int($state['pid'] ?? null) ? $state : null;
    }
}
