<?php

namespace Surge\Laravel\Support;

use InvalidArgumentException;

/**
 * The Redis the bridge subscribes to, taken from Laravel's database.redis config so nothing is
 * configured twice: host, port, username, password, database, TLS scheme, and the
 * options.prefix that Laravel's redis broadcaster puts before every channel.
 */
final class RedisTarget
{
    private function __construct(
        public readonly string $connection,
        public readonly string $url,
        public readonly string $display,
        public readonly ?string $host,
        public readonly ?int $port,
        public readonly string $prefix,
    ) {
    }

    /** @param array $redis config('database.redis') */
    public static function fromConfig(array $redis, string $connection): self
    {
        $conf = $redis[$connection] ?? null;
        if (! is_array($conf)) {
            $known = implode(', ', array_diff(array_keys($redis), ['client', 'options', 'clusters']));
            throw new InvalidArgumentException("surge.redis.connection: there is no Redis connection '{$connection}' in config/database.php (redis: {$known})");
        }
        if (! empty($conf['url'])) {
            $parts = parse_url((string) $conf['url']);
            if ($parts === false) {
                // As Laravel's own connector refuses it, rather than using 127.0.0.1:6379.
                throw new InvalidArgumentException("database.redis.{$connection}.url is not a URL Laravel reads (redis://[[user]:password@]host:port[/db] or tls://...)");
            }
            $conf = array_merge($conf, array_filter([
                'scheme' => $parts['scheme'] ?? null,
                'host' => $parts['host'] ?? null,
                'port' => $parts['port'] ?? null,
                'username' => isset($parts['user']) ? rawurldecode($parts['user']) : null,
                'password' => isset($parts['pass']) ? rawurldecode($parts['pass']) : null,
                'database' => isset($parts['path']) && trim($parts['path'], '/') !== '' ? trim($parts['path'], '/') : null,
            ], fn ($v) => $v !== null));
        }
        // predis names a unix socket by 'path' ('scheme' => 'unix'); phpredis by the host.
        if (($conf['scheme'] ?? '') === 'unix' && ! empty($conf['path'])) {
            $conf['host'] = $conf['path'];
        }
        $host = (string) ($conf['host'] ?? '127.0.0.1');
        // phpredis takes the scheme in the host (REDIS_HOST=tls://redis.example).
        if (preg_match('#^(tls|rediss|tcp|redis)://(.+)$#', $host, $m)) {
            $host = $m[2];
            if (in_array($m[1], ['tls', 'rediss'], true)) {
                $conf['scheme'] = 'tls';
            }
        }
        // An IPv6 address as a URL writes it ([::1], which parse_url() keeps): bare here,
        // bracketed where a URL is made.
        if (preg_match('#^\[(.*)\]$#', $host, $m)) {
            $host = $m[1];
        }
        $db = $conf['database'] ?? 0;
        if (! is_numeric($db) || (int) $db < 0) {
            throw new InvalidArgumentException("database.redis.{$connection}.database must be a database number, got ".var_export($db, true));
        }
        $password = isset($conf['password']) && $conf['password'] !== '' ? (string) $conf['password'] : null;
        $username = (string) ($conf['username'] ?? '');
        // The redis broadcaster prefixes channels with the global options.prefix (BroadcastManager).
        $prefix = (string) ($redis['options']['prefix'] ?? '');
        if ($host !== '' && $host[0] === '/') {
            // A socket has no port (phpredis configs often say 0 or -1).
            $query = ['db' => (int) $db] + ($password === null ? [] : array_filter(['user' => $username, 'pass' => $password], fn ($v) => $v !== ''));
            $url = 'redis+unix://'.$host.'?'.http_build_query($query, '', '&', PHP_QUERY_RFC3986);

            return new self($connection, $url, "unix:{$host} db ".(int) $db, null, null, $prefix);
        }
        $port = $conf['port'] ?? 6379;
        if (! is_numeric($port) || (int) $port < 1 || (int) $port > 65535) {
            throw new InvalidArgumentException("database.redis.{$connection}.port must be a port number, got ".var_export($port, true));
        }
        $auth = $password === null ? '' : rawurlencode($username).':'.rawurlencode($password).'@';
        $scheme = in_array($conf['scheme'] ?? '', ['tls', 'rediss'], true) ? 'rediss' : 'redis';
        $hostPart = str_contains($host, ':') ? "[{$host}]" : $host;

        return new self(
            $connection,
            "{$scheme}://{$auth}{$hostPart}:".(int) $port.'/'.(int) $db,
            "{$scheme}://{$hostPart}:".(int) $port.'/'.(int) $db,
            $host,
            (int) $port,
            $prefix,
        );
    }

    /** Null if something answers on host:port, else why not (e.g. "Connection refused"). */
    public function unreachable(float $timeout = 1.0): ?string
    {
        if ($this->host === null) {
            return null;
        }
        $host = str_contains($this->host, ':') ? "[{$this->host}]" : $this->host;
        $socket = @stream_socket_client("tcp://{$host}:{$this->port}", $errno, $error, $timeout);
        if ($socket === false) {
            return $error !== '' ? $error : "error {$errno}";
        }
        fclose($socket);

        return null;
    }
}
