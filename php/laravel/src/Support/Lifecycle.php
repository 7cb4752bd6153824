<?php

namespace Surge\Laravel\Support;

use Illuminate\Contracts\Debug\ExceptionHandler;
use Illuminate\Contracts\Foundation\Application;
use Illuminate\Database\DetectsLostConnections;
use Illuminate\Http\Request as IlluminateRequest;
use Illuminate\Routing\UrlGenerator;
use Illuminate\Support\Facades\Facade;
use Throwable;

/**
 * Runs every handler callback in a clean state: one process serves everybody for days, so
 * nothing that belongs to one client may survive into another client's callback.
 *
 * Around each callback: the request is a fresh one (the handshake's, for onOpen and onRequest;
 * else one for `app.url`, as artisan commands have); afterwards every auth guard (and the user
 * it holds) is forgotten, the `Guard` the container handed out too, scoped instances are
 * dropped (and what facades resolved), the configuration, locale and URL defaults, forced
 * root and scheme go back to what the app booted with, the in-memory session and the array
 * cache store are dropped, a transaction left open is rolled back, the log context, queued
 * cookies, the query log and a sticky connection's "records modified" are cleared, a database
 * connection opened under a configuration the
 * callback changed is closed, and a database connection that was lost ("server has gone away",
 * "lost connection", ...) is purged so the next query reconnects. An exception is reported
 * (log + one line on stderr) and the server keeps serving.
 */
class Lifecycle
{
    use DetectsLostConnections;

    /** @var callable(string): void */
    private $warn;

    /** The configuration as the app booted with it, put back after every callback. */
    private array $config;

    /** How many service providers were loaded when it was taken (deferred ones load later). */
    private int $providers;

    private string $locale;

    /** The URL generator's defaults, forced root and scheme as the app booted with them. */
    private array $urls = [[], null, null];

    public function __construct(private Application $app, callable $warn)
    {
        $this->warn = $warn;
        $this->config = $app['config']->all();
        $this->providers = count($app->getLoadedProviders());
        $this->locale = (string) ($this->config['app']['locale'] ?? 'en');
        if ($app->resolved('url')) {
            $url = $app['url'];
            $this->urls = (fn () => [$this->getDefaultParameters(), $this->forcedRoot, $this->forceScheme])->call($url);
        }
    }

    /**
     * Runs $callback (with $request as request(), if given) and cleans up after it; false if
     * it threw (reported).
     */
    public function run(string $what, callable $callback, ?IlluminateRequest $request = null): bool
    {
        $this->bindRequest($request ?? $this->appUrlRequest());
        try {
            $callback();
            $this->runDeferred(true);

            return true;
        } catch (Throwable $e) {
            $this->report($what, $e);
            $this->runDeferred(false);

            return false;
        } finally {
            $this->reset();
        }
    }

    /**
     * Laravel 11+: what defer() deferred runs once the request (here the callback) is done, in
     * its state (config, user), as Laravel runs it after a response below 400 or a job that
     * succeeded, those marked `always` after a failure too; the reset would drop them unrun.
     */
    private function runDeferred(bool $succeeded): void
    {
        $deferred = 'Illuminate\\Support\\Defer\\DeferredCallbackCollection';
        if (! $this->app->resolved($deferred)) {
            return;
        }
        try {
            $this->app->make($deferred)->invokeWhen(fn ($callback) => $succeeded || $callback->always);
        } catch (Throwable $e) {
            $this->report('deferred callbacks', $e);
        }
    }

    /** The request `$make` builds for request(), or null (reported) when it cannot be built. */
    public function request(callable $make): ?IlluminateRequest
    {
        try {
            return $make();
        } catch (Throwable $e) {
            $this->report('reading the request', $e);

            return null;
        }
    }

    public function reset(): void
    {
        $app = $this->app;
        try {
            // Connections whose configuration the callback changed (a tenant's database): one
            // it opened so must not serve the next callback, maybe another tenant's.
            $retargeted = array_keys(array_filter(
                (array) $app['config']->get('database.connections', []),
                fn ($config, $name) => $config !== ($this->config['database']['connections'][$name] ?? null),
                ARRAY_FILTER_USE_BOTH
            ));
            $this->restoreConfig();
            if ($app->resolved('translator') && $app['translator']->getLocale() !== $this->locale) {
                $app->setLocale($this->locale);
            }
            if ($app->resolved('auth')) {
                $app['auth']->forgetGuards();
                $this->forgetGuardRebindings();
            }
            // What a type-hinted Guard contract resolved to: the default guard, kept apart.
            $app->forgetInstance('auth.driver');
            // Laravel 11+: once() keeps its values for one request.
            if (class_exists('Illuminate\\Support\\Once', false)) {
                \Illuminate\Support\Once::flush();
            }
            if (method_exists($app, 'forgetScopedInstances')) {
                $app->forgetScopedInstances();
            }
            if ($app->resolved('session')) {
                $app['session']->forgetDrivers();
                $app->forgetInstance('session.store');
            }
            // A facade keeps what it resolved first: one over a scoped service (Laravel 11's
            // Context) or the session would hand the next callback this one's (as Laravel's
            // queue worker, facades resolve anew after each job).
            Facade::clearResolvedInstances();
            if ($app->resolved('url')) {
                $this->restoreUrls($app['url']);
            }
            // Laravel documents the array store as living for one request.
            if ($app->resolved('cache') && isset($this->config['cache']['stores']['array'])) {
                $app['cache']->store('array')->flush();
            }
            if ($app->resolved('db')) {
                foreach ($app['db']->getConnections() as $name => $connection) {
                    if ($connection->transactionLevel() > 0) {
                        ($this->warn)("a callback left a transaction open on database connection '{$name}': rolled back");
                        $connection->rollBack(0);
                    }
                    $connection->flushQueryLog();
                    // A write sends a sticky connection's reads to the primary for the rest of
                    // the request: not for every later callback.
                    if (method_exists($connection, 'forgetRecordModificationState')) { // 8.33+
                        $connection->forgetRecordModificationState();
                    }
                    // Laravel 9+: whenQueryingForLongerThan() counts per request.
                    if (method_exists($connection, 'resetTotalQueryDuration')) {
                        $connection->resetTotalQueryDuration();
                        $connection->allowQueryDurationHandlersToRunAgain();
                    }
                    if (in_array($name, $retargeted, true)) {
                        $app['db']->purge($name);
                    }
                }
            }
            // Log::withContext() of one user's callback would be in another's log lines.
            if ($app->resolved('log')) {
                foreach ($app['log']->getChannels() as $channel) {
                    if (method_exists($channel, 'withoutContext')) {
                        $channel->withoutContext();
                    }
                }
                if (method_exists($app['log'], 'flushSharedContext')) {
                    $app['log']->flushSharedContext();
                }
            }
            // Cookie::queue() (a remember-me cookie) would go with another user's response.
            if ($app->resolved('cookie') && method_exists($app['cookie'], 'flushQueuedCookies')) {
                $app['cookie']->flushQueuedCookies();
            }
        } catch (Throwable $e) {
            $this->report('cleanup', $e);
        }
        $this->bindRequest($this->appUrlRequest());
    }

    /**
     * URL::defaults(), forceRootUrl() and forceScheme() (what tenant and locale middleware
     * do) made for one callback's links, not every later one's.
     */
    private function restoreUrls(UrlGenerator $url): void
    {
        [$defaults, $root, $scheme] = $this->urls;
        (function () use ($defaults, $root, $scheme) {
            $this->routeUrl()->defaultParameters = $defaults;
            $this->forcedRoot = $root;
            $this->forceScheme = $scheme;
        })->call($url);
    }

    /**
     * Each guard registers itself for the next request (`$app->refresh('request', $guard,
     * 'setRequest')`), and forgetGuards() does not take that back: every callback that used
     * auth() left a guard (and its user) in the container for good, and every later request
     * binding called them all (20,000 messages: 20,000 guards, the server 9x slower, then out
     * of memory). The rebinding callbacks of guards are dropped with the guards.
     */
    private function forgetGuardRebindings(): void
    {
        (function () {
            $this->reboundCallbacks['request'] = array_values(array_filter(
                $this->reboundCallbacks['request'] ?? [],
                fn ($callback) => ! ((new \ReflectionFunction($callback))->getStaticVariables()['target'] ?? null) instanceof \Illuminate\Contracts\Auth\Guard
            ));
        })->call($this->app);
    }

    /**
     * Puts back the items of the one configuration repository (services such as the managers
     * keep that object: swapping in another would leave them with a stale one). PHP shares the
     * arrays until one is written, so this costs nothing when nothing changed. A deferred
     * provider first loaded by the callback merged its own configuration: that is kept from
     * then on (with whatever else the callback changed).
     */
    private function restoreConfig(): void
    {
        $config = $this->app['config'];
        $loaded = count($this->app->getLoadedProviders());
        if ($loaded !== $this->providers) {
            [$this->providers, $this->config] = [$loaded, $config->all()];

            return;
        }
        (function (array $items) {
            $this->items = $items;
        })->call($config, $this->config);
    }

    /** The request artisan commands have (Laravel's console bootstrap makes it from `app.url`). */
    private function appUrlRequest(): IlluminateRequest
    {
        $url = (string) (($this->config['app']['url'] ?? null) ?: 'http://localhost');
        $path = parse_url($url, PHP_URL_PATH);
        $server = $path ? ['SCRIPT_FILENAME' => $path, 'SCRIPT_NAME' => $path] : [];

        return IlluminateRequest::create($url, 'GET', [], [], [], $server);
    }

    /**
     * In a worker process (worker_num > 1), forked from the one that ran the command: database
     * and Redis connections opened before the fork are the parent's sockets, shared with every
     * other worker; they are dropped here so that each worker opens its own on first use.
     */
    public function forked(): void
    {
        $app = $this->app;
        $this->dropDatabaseConnections();
        if ($app->resolved('redis')) {
            // The same objects, on sockets of this worker's: one a service kept from before
            // went on using the parent's socket, which every worker shared.
            foreach ($app['redis']->connections() ?? [] as $name => $connection) {
                if (! $this->reconnected($connection)) {
                    $app['redis']->purge($name);
                }
            }
        }
    }

    /**
     * Each database connection lets go of its PDO and opens a new one on its next query. The
     * connection objects stay: one kept by a service made before (Laravel 8's database cache
     * store, made by every artisan command; a handler's injected connection) would otherwise
     * be left without a PDO for good (purge() forgets the object, which then cannot reconnect).
     */
    private function dropDatabaseConnections(): void
    {
        if ($this->app->resolved('db')) {
            foreach (array_keys($this->app['db']->getConnections()) as $name) {
                $this->app['db']->disconnect($name);
            }
        }
    }

    /**
     * A Redis connection made anew in place: phpredis's client, which would connect again by
     * itself after close() but without its SELECT (on database 0) nor its name, is replaced by
     * one its connector makes as it made the first; predis connects again with both. False if
     * Redis cannot be reached now: the old client is closed all the same.
     */
    private function reconnected(object $connection): bool
    {
        if (! $connection instanceof \Illuminate\Redis\Connections\PhpRedisConnection) {
            $connection->disconnect();

            return true;
        }

        return (function (): bool {
            $old = $this->client;
            try {
                $this->client = ($this->connector)();

                return true;
            } catch (Throwable) {
                return false;
            } finally {
                $old->close();
            }
        })->call($connection);
    }

    private function bindRequest(IlluminateRequest $request): void
    {
        // instance() fires Laravel's own 'request' rebinding: the auth provider sets the user resolver.
        $this->app->instance('request', $request);
        Facade::clearResolvedInstance('request');
    }

    private function report(string $what, Throwable $e): void
    {
        if ($this->causedByLostConnection($e)) {
            $this->dropDatabaseConnections();
            ($this->warn)("{$what}: the database connection was lost; it reconnects on the next query");
        }
        ($this->warn)(sprintf('%s failed: %s: %s (%s:%d)', $what, get_class($e), $e->getMessage(), $e->getFile(), $e->getLine()));
        try {
            $this->app[ExceptionHandler::class]->report($e);
        } catch (Throwable) {
            // The log itself failing must not stop the server.
        }
    }
}
