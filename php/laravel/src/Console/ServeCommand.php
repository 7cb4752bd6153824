<?php

namespace Surge\Laravel\Console;

use Illuminate\Console\Command;
use Illuminate\Contracts\Debug\ExceptionHandler;
use InvalidArgumentException;
use Surge\Http\Response as SurgeResponse;
use Surge\Laravel\Contracts\Handler;
use Surge\Laravel\Contracts\HandlesHandshake;
use Surge\Laravel\Contracts\HandlesHttp;
use Surge\Laravel\Contracts\HandlesTasks;
use Surge\Laravel\Support\HttpRequest;
use Surge\Laravel\Support\Lifecycle;
use Surge\Laravel\Support\RedisTarget;
use Surge\Laravel\Support\ServerState;
use Symfony\Component\HttpFoundation\Response as LaravelResponse;
use Throwable;

class ServeCommand extends Command
{
    protected $signature = 'surge:serve
        {--host= : The address to listen on (default: config surge.host)}
        {--port= : The port to listen on (default: config surge.port)}';

    protected $description = 'Run the Surge WebSocket server until SIGINT or SIGTERM';

    /** The keys config/surge.php may hold, at its top and in its redis and pusher arrays. */
    private const CONFIG_KEYS = [
        '' => ['host', 'port', 'handler', 'settings', 'redis', 'pusher'],
        'redis' => ['enabled', 'connection', 'channels'],
        'pusher' => ['enabled', 'connections', 'options', 'webhooks'],
    ];

    public function handle(): int
    {
        if (! extension_loaded('surge')) {
            $this->error('The surge PHP extension is not loaded, so surge:serve cannot run.');
            $this->line('Build it and load it for the CLI, e.g.:');
            $this->line('  scripts/build.sh    # in the Surge repository: writes build/surge.so');
            $this->line('  echo "extension=/path/to/surge/build/surge.so" | sudo tee /etc/php/'.PHP_MAJOR_VERSION.'.'.PHP_MINOR_VERSION.'/cli/conf.d/50-surge.ini');
            $this->line('  (or run once: php -d extension=/path/to/surge/build/surge.so artisan surge:serve)');

            return 1;
        }

        try {
            [$host, $port, $settings, $handlerClass, $redis, $channels] = $this->configuration();
            [$settings, $pusherFrom] = $this->pusherApps($settings);
        } catch (InvalidArgumentException $e) {
            $this->error('Surge is misconfigured: '.$e->getMessage());

            return 1;
        }

        $server = new \Surge\WebSocket\Server($host, $port);
        if ($redis !== null) {
            $settings += ['redis' => $redis->url, 'redis_prefix' => $redis->prefix, 'redis_forward' => true];
        }
        try {
            $server->set($settings);
        } catch (\Surge\Exception $e) {
            $this->error("Surge is misconfigured: surge.settings: {$e->getMessage()}");

            return 1;
        }

        $handler = $this->laravel->make($handlerClass);
        $this->wire($server, $handler, $settings);
        if ($redis !== null) {
            $server->subscribe($channels);
        }

        $this->banner($host, $port, $handlerClass, $handler, $redis, $channels, $settings);
        foreach ($pusherFrom as $line) {
            $this->line("  pusher   {$line}");
        }
        try {
            $server->start();
        } catch (\Surge\Exception $e) {
            $this->error("Surge could not start: {$e->getMessage()}");

            return 1;
        } finally {
            ServerState::forget($this->laravel, $server->port);
        }
        $this->line('Surge stopped.');

        return 0;
    }

    /** Reads and checks config('surge'); every problem names the key and the bad value. */
    private function configuration(): array
    {
        $config = (array) $this->laravel['config']->get('surge', []);
        foreach (['redis', 'pusher'] as $part) {
            $config[$part] = self::switchable($config[$part] ?? [], $part);
        }
        // A misspelt key ('setings', 'redis.enable') would be ignored, and the server run
        // without what it said.
        foreach (['' => $config, 'redis.' => $config['redis'] ?? [], 'pusher.' => $config['pusher'] ?? []] as $at => $items) {
            $known = self::CONFIG_KEYS[rtrim($at, '.')];
            $unknown = is_array($items) ? array_diff(array_keys($items), $known) : [];
            if ($unknown !== []) {
                throw new InvalidArgumentException("surge.{$at}".reset($unknown).' is no setting of config/surge.php; '.($at === '' ? 'it' : 'surge.'.rtrim($at, '.')).' takes '.implode(', ', $known));
            }
        }

        $host = $this->option('host') ?? $config['host'] ?? '0.0.0.0';
        if (! is_string($host) || $host === '') {
            throw new InvalidArgumentException('surge.host (or --host) must be an address such as 0.0.0.0, got '.var_export($host, true));
        }
        $port = $this->option('port') ?? $config['port'] ?? 6001;
        if (! (is_int($port) || (is_string($port) && ctype_digit($port))) || (int) $port < 0 || (int) $port > 65535) {
            throw new InvalidArgumentException('surge.port (or --port) must be a port number from 0 to 65535, got '.var_export($port, true));
        }

        $settings = $config['settings'] ?? [];
        if (! is_array($settings)) {
            throw new InvalidArgumentException('surge.settings must be an array of Surge settings, got '.get_debug_type($settings));
        }

        $handler = $config['handler'] ?? \Surge\Laravel\ChannelHandler::class;
        if (! is_string($handler) || ! class_exists($handler)) {
            throw new InvalidArgumentException('surge.handler: class '.var_export($handler, true).' does not exist (make one with: php artisan make:surge-handler Name)');
        }
        if (! is_subclass_of($handler, Handler::class)) {
            throw new InvalidArgumentException("surge.handler: {$handler} does not implement ".Handler::class);
        }
        if ((int) ($settings['task_worker_num'] ?? 0) > 0 && ! is_subclass_of($handler, HandlesTasks::class)) {
            throw new InvalidArgumentException("surge.settings.task_worker_num: the handler {$handler} must implement ".HandlesTasks::class.' to run tasks');
        }

        $redisConfig = $config['redis'];
        $redis = null;
        $channels = [];
        // On unless switched off, as in the package's config: a published config/surge.php
        // replaces the whole 'redis' array, and may leave 'enabled' out.
        if (filter_var($redisConfig['enabled'] ?? true, FILTER_VALIDATE_BOOLEAN)) {
            $connection = $redisConfig['connection']
                ?? $this->laravel['config']->get('broadcasting.connections.redis.connection')
                ?? 'default';
            $redis = RedisTarget::fromConfig((array) $this->laravel['config']->get('database.redis', []), (string) $connection);
            $channels = $redisConfig['channels'] ?? ['*'];
            $channels = is_string($channels) ? [$channels] : $channels;
            if (! is_array($channels) || $channels === [] || array_filter($channels, fn ($c) => ! is_string($c) || $c === '') !== []) {
                throw new InvalidArgumentException("surge.redis.channels must be a list of channel names or patterns, e.g. ['*'] or ['orders', 'private-orders.*']");
            }
            $channels = array_values($channels);
        }

        return [$host, (int) $port, $settings, $handler, $redis, $channels];
    }

    /**
     * The Pusher protocol's apps, from the broadcasting connections named in surge.pusher
     * (pusher and reverb by default: key, secret, app_id), unless surge.settings has 'pusher'.
     * Returns the settings and one banner line per app.
     */
    private function pusherApps(array $settings): array
    {
        $config = self::switchable($this->laravel['config']->get('surge.pusher', []), 'pusher');
        if (array_key_exists('pusher', $settings)) {
            return [$settings, ['apps from surge.settings.pusher']];
        }
        if (! filter_var($config['enabled'] ?? true, FILTER_VALIDATE_BOOLEAN)) {
            return [$settings, []];
        }
        $options = $config['options'] ?? [];
        if (! is_array($options)) {
            throw new InvalidArgumentException('surge.pusher.options must be an array (client_events, client_event_rate, max_connections, activity_timeout, presence_max_members, presence_max_member_size, max_channels_per_connection)');
        }
        $webhooks = $config['webhooks'] ?? [];
        if (! is_array($webhooks)) {
            throw new InvalidArgumentException("surge.pusher.webhooks must be a list of ['url' => ..., 'event_types' => [...]]");
        }
        $apps = [];
        $lines = [];
        foreach ((array) ($config['connections'] ?? ['pusher', 'reverb']) as $name) {
            $connection = $this->laravel['config']->get("broadcasting.connections.{$name}");
            if (! is_array($connection) || ! in_array($connection['driver'] ?? null, ['pusher', 'reverb'], true)) {
                continue;
            }
            $app = ['app_id' => (string) ($connection['app_id'] ?? ''), 'key' => (string) ($connection['key'] ?? ''), 'secret' => (string) ($connection['secret'] ?? '')];
            if (in_array('', $app, true)) {
                continue; // not set up (e.g. PUSHER_APP_KEY empty): not an app
            }
            // The pusher and reverb connections often hold the same app (after a switch).
            $same = array_filter($apps, fn ($other) => $other['app_id'] === $app['app_id'] || $other['key'] === $app['key']);
            if ($same !== []) {
                $other = reset($same);
                if (array_slice($other, 0, 3) !== $app) {
                    throw new InvalidArgumentException("broadcasting.connections.{$name} names app {$app['app_id']} (key {$app['key']}) as another connection does, with another id, key or secret: one app, one set of credentials");
                }
                $lines[] = "app {$app['app_id']} from broadcasting.connections.{$name}: the same app as above";
                continue;
            }
            $apps[] = $app + ($options === [] ? [] : ['options' => $options]) + ($webhooks === [] ? [] : ['webhooks' => $webhooks]);
            $lines[] = "app {$app['app_id']} (key {$app['key']}) from broadcasting.connections.{$name}: Echo at ".self::scheme($settings)."://HOST:PORT/app/{$app['key']}";
        }

        if ($apps === []) {
            return [$settings, []];
        }
        // Said only when there was an app to serve.
        if ((int) ($settings['worker_num'] ?? 1) > 1) {
            return [$settings, ['off: the Pusher protocol needs worker_num 1 (surge.settings)']];
        }
        if ((int) ($settings['task_worker_num'] ?? 0) > 0) {
            return [$settings, ['off: the Pusher protocol needs task_worker_num 0 (surge.settings)']];
        }

        return [$settings + ['pusher' => $apps], $lines];
    }

    private function wire(\Surge\WebSocket\Server $server, Handler $handler, array $settings): void
    {
        // For what has no $server of its own (onRequest, a service): app(Server::class). Every
        // worker forked later has it too.
        $this->laravel->instance(\Surge\WebSocket\Server::class, $server);
        foreach (['Surge\\Server', 'Surge\\Http\\Server'] as $alias) {
            $this->laravel->alias(\Surge\WebSocket\Server::class, $alias);
        }
        $lifecycle = new Lifecycle($this->laravel, fn (string $line) => fwrite(STDERR, "surge: {$line}\n"));
        $lifecycle->reset();
        $secure = ! empty($settings['ssl_cert_file']);

        $server->on('start', function ($server) use ($settings) {
            // For surge:reload: the master's pid (this process's).
            ServerState::write($this->laravel, $server, $settings);
            $this->line(sprintf('Surge listening on %s://%s:%d (pid %d)', self::scheme($settings), $server->host, $server->port, getmypid()));
        });
        $server->on('workerStart', function ($server, int $workerId) use ($lifecycle) {
            if ($server->worker_pid !== $server->master_pid) {
                $lifecycle->forked();
            }
        });
        $open = function ($server, $request) use ($handler, $lifecycle, $secure) {
            // A handshake Laravel cannot take as a request is refused: onOpen, where a handler
            // checks who connects, would not run, and the connection stayed open.
            $illuminate = $lifecycle->request(fn () => HttpRequest::from($request, $secure));
            if ($illuminate === null) {
                $server->disconnect($request->fd, 4400, 'bad request');

                return;
            }
            // An onOpen that threw (a database down while it checked who connects) did not let
            // the client in: it is closed, not served as if it had been.
            if (! $lifecycle->run('onOpen', fn () => $handler->onOpen($server, $request), $illuminate)) {
                $server->disconnect($request->fd, 4500, 'server error');
            }
        };
        $server->on('open', $open);
        if ($handler instanceof HandlesHandshake) {
            $server->on('handshake', function ($request, $response) use ($server, $handler, $lifecycle, $secure, $open) {
                $illuminate = $lifecycle->request(fn () => HttpRequest::from($request, $secure));
                if ($illuminate === null) {
                    $response->status(400);
                    $response->end('');

                    return false;
                }
                // One that threw refuses the client (403), as one that returned false.
                $admitted = false;
                $lifecycle->run('onHandshake', function () use ($handler, $request, $response, &$admitted) {
                    $admitted = $handler->onHandshake($request, $response);
                }, $illuminate);
                // end() is false if the handler answered already (a refusal) or the client left.
                if (! $admitted || ! $response->status(101) || ! $response->end()) {
                    return false;
                }
                // Surge calls no open callback after a handshake callback: onOpen runs here, the
                // connection registered by end().
                $open($server, $request);

                return true;
            });
        }
        $server->on('message', function ($server, $frame) use ($handler, $lifecycle) {
            $lifecycle->run('onMessage', fn () => $handler->onMessage($server, $frame));
        });
        $server->on('close', function ($server, $fd) use ($handler, $lifecycle) {
            $lifecycle->run('onClose', fn () => $handler->onClose($server, $fd));
        });
        if ($handler instanceof HandlesHttp) {
            $server->on('request', function ($request, $response) use ($handler, $lifecycle, $secure) {
                $illuminate = $lifecycle->request(fn () => HttpRequest::from($request, $secure));
                if ($illuminate === null) {
                    $response->status(400);
                    $response->end('');

                    return;
                }
                // A response the handler keeps to end later (a stream, a timer) is its own; one
                // it neither ends nor keeps gets a 500 from Surge when it is freed.
                $lifecycle->run('onRequest', function () use ($handler, $request, $response, $illuminate) {
                    try {
                        $handler->onRequest($request, $response);
                    } catch (Throwable $e) {
                        // As Laravel answers it: abort(403) a 403, findOrFail() a 404, a failed
                        // validation a 422 with its errors; reported only if Laravel would.
                        $exceptions = $this->laravel->make(ExceptionHandler::class);
                        // Not into a body already under way (a download written with write()):
                        // status() is false once the head is sent.
                        if ($response->isWritable() && $response->status(500)) {
                            $this->answer($response, fn () => $exceptions->render($illuminate, $e));
                        }
                        if ($exceptions->shouldReport($e)) {
                            throw $e;
                        }
                    }
                }, $illuminate);
            });
        }
        if ($handler instanceof HandlesTasks) {
            $server->on('task', function ($server, int $taskId, int $srcWorkerId, $data) use ($handler, $lifecycle) {
                $result = null;
                $lifecycle->run('onTask', function () use ($handler, $server, $taskId, $srcWorkerId, $data, &$result) {
                    $result = $handler->onTask($server, $taskId, $srcWorkerId, $data);
                });

                return $result;
            });
            $server->on('finish', function ($server, int $taskId, $result) use ($handler, $lifecycle) {
                $lifecycle->run('onFinish', fn () => $handler->onFinish($server, $taskId, $result));
            });
        }
    }

    /** wss with a certificate (surge.settings.ssl_cert_file), else ws. */
    private static function scheme(array $settings): string
    {
        return empty($settings['ssl_cert_file']) ? 'ws' : 'wss';
    }

    private function banner(string $host, int $port, string $handlerClass, Handler $handler, ?RedisTarget $redis, array $channels, array $settings): void
    {
        $this->info('Surge '.(defined('SURGE_VERSION') ? SURGE_VERSION : '').' for Laravel '.$this->laravel->version());
        $this->line('  listen   '.self::scheme($settings)."://{$host}:{$port}".($handler instanceof HandlesHttp ? ' (and HTTP)' : ''));
        $this->line("  handler  {$handlerClass}");
        if ($redis === null) {
            $this->line('  redis    off (surge.redis.enabled): broadcasts are not forwarded');
        } else {
            $this->line("  redis    on: connection '{$redis->connection}' {$redis->display}, prefix '{$redis->prefix}'");
            $this->line('  channels '.implode(', ', $channels));
            $driver = $this->laravel['config']->get('broadcasting.default');
            // A pusher or reverb broadcaster reaches Surge too, through its HTTP API.
            $viaApi = isset($settings['pusher']) && in_array($this->laravel['config']->get("broadcasting.connections.{$driver}.driver"), ['pusher', 'reverb'], true);
            if ($driver !== 'redis' && ! $viaApi) {
                // Laravel 11 renamed the variable behind broadcasting.default: name both.
                $this->warn("  warning  the default broadcaster (BROADCAST_DRIVER, or BROADCAST_CONNECTION since Laravel 11) is '{$driver}', not 'redis': this app's own broadcasts will not reach Redis");
            }
            if (($why = $redis->unreachable()) !== null) {
                $this->warn("  warning  Redis at {$redis->display} (connection '{$redis->connection}') is unreachable: {$why}. Broadcasts are not forwarded until it answers; Surge keeps retrying.");
            }
        }
        $this->line('  stop     Ctrl+C or SIGTERM');
        if (($settings['worker_num'] ?? 1) > 1 || ($settings['task_worker_num'] ?? 0) > 0) {
            // With the port: the command that finds this server when several run here too.
            $this->line('  reload   php artisan surge:reload'.($port > 0 ? " --port={$port}" : '').' (restarts the workers one at a time)');
        }
    }

    /** surge.redis or surge.pusher as an array: `false` (or true) says whether it is enabled. */
    private static function switchable(mixed $part, string $name): array
    {
        if (is_bool($part)) {
            return ['enabled' => $part];
        }
        if (! is_array($part)) {
            throw new InvalidArgumentException("surge.{$name} must be an array (or false to turn it off), got ".get_debug_type($part));
        }

        return $part;
    }

    /** Sends the response `$render` makes (a 500 without a body if it throws). */
    private function answer(SurgeResponse $response, callable $render): void
    {
        try {
            /** @var LaravelResponse $answer */
            $answer = $render();
        } catch (Throwable) {
            $response->status(500);
            $response->end('');

            return;
        }
        $response->status($answer->getStatusCode());
        foreach ($answer->headers->allPreserveCase() as $name => $values) {
            $response->header($name, $values);
        }
        $response->end((string) $answer->getContent());
    }
}
