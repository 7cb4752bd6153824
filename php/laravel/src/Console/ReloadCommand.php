<?php

namespace Surge\Laravel\Console;

use Illuminate\Console\Command;
use Surge\Laravel\Support\ServerState;

/**
 * php artisan surge:reload: the running surge:serve restarts its worker processes one at a time.
 * New processes are forked from surge:serve's own, so what it loaded before the fork (the app's
 * boot, config, routes, the handler class) stays as it was: changed code of those needs a
 * restart of surge:serve.
 */
class ReloadCommand extends Command
{
    protected $signature = 'surge:reload
        {--tasks : Restart only the task workers}
        {--port= : The port of the surge:serve to reload, when several run here}';

    protected $description = 'Restart the worker processes of the running surge:serve one at a time';

    public function handle(): int
    {
        $state = $this->server();
        if ($state === null) {
            return 1;
        }
        if (! function_exists('posix_kill')) {
            $this->error("surge:reload needs PHP's posix extension to signal the server (pid {$state['pid']}).");

            return 1;
        }
        if (! posix_kill($state['pid'], 0)) {
            // EPERM (1): it runs, as another user (systemd's www-data, say).
            $this->error(posix_get_last_error() === 1
                ? "Surge (pid {$state['pid']}) runs as another user: run surge:reload as that user (or root)."
                : "Surge is not running: its process (pid {$state['pid']}) is gone.");

            return 1;
        }
        // A server that was killed outright leaves its file; its pid may be another process's now.
        if (file_exists("/proc/{$state['pid']}") && ! ServerState::running($state)) {
            $this->error("Surge is not running: pid {$state['pid']} is not surge:serve (".ServerState::path($this->laravel, $state['port']).' is left from a server that did not stop cleanly).');

            return 1;
        }
        if ($this->option('tasks') ? $state['task_workers'] === 0 : $state['workers'] < 2 && $state['task_workers'] === 0) {
            $what = $this->option('tasks') ? 'has no task workers' : 'runs in one process';
            $this->error("Surge (pid {$state['pid']}) {$what}: a reload restarts worker processes (surge.settings.worker_num above 1, or task_worker_num). Restart surge:serve instead.");

            return 1;
        }
        // The master restarts them one at a time, as $server->reload() asks it to (Linux's
        // numbers where pcntl, which defines the names, is not loaded).
        $signal = $this->option('tasks') ? (defined('SIGUSR2') ? SIGUSR2 : 12) : (defined('SIGUSR1') ? SIGUSR1 : 10);
        posix_kill($state['pid'], $signal);
        $which = $this->option('tasks') ? 'task workers' : 'workers';
        $this->info("Surge (pid {$state['pid']}) restarts its {$which} one at a time.");

        return 0;
    }

    /** The state of the server to reload: the one running here, or the one on --port. */
    private function server(): ?array
    {
        $states = ServerState::all($this->laravel);
        $port = $this->option('port');
        if ($port !== null) {
            if (! ctype_digit($port) || (int) $port < 1 || (int) $port > 65535) {
                $this->error("--port must be a port number from 1 to 65535, got '{$port}'.");

                return null;
            }
            $state = $states[(int) $port] ?? null;
            if ($state === null) {
                $this->error('Surge is not running here on port '.(int) $port.': '.ServerState::path($this->laravel, (int) $port).' is missing.');
            }

            return $state;
        }
        // Files left by servers that did not stop cleanly (killed, exit() in a callback) do
        // not count against the one that runs.
        $running = array_filter($states, [ServerState::class, 'running']);
        if (count($running) === 1) {
            return reset($running);
        }
        if (count($running) > 1 || count($states) > 1) {
            $ports = array_keys($running ?: $states);
            $this->error('Several surge:serve run here (ports '.implode(', ', $ports).'): choose one with --port.');

            return null;
        }
        if ($states === []) {
            $this->error('Surge is not running here: no '.ServerState::pattern($this->laravel).' (php artisan surge:serve writes one while it serves).');

            return null;
        }

        return reset($states);
    }
}
