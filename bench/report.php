<?php
// Summarises what bench/run.sh measured: prints one table, a row per scenario and server with
// its figures, its health and its ratios against issue 8's targets (bench/targets.php), and
// writes latest.json (and a dated copy) with the machine, the settings, the summaries, every
// target check and the raw measurements.
// Usage: php bench/report.php RESULTS.jsonl OUT_DIR ELAPSED_SECS SETTINGS_JSON

require __DIR__ . '/targets.php';

[, $resultsFile, $outDir, $elapsed, $settingsJson] = $argv + [3 => 0, 4 => '{}'];

function machine(): array
{
    $cpuinfo = (string) @file_get_contents('/proc/cpuinfo');
    $meminfo = (string) @file_get_contents('/proc/meminfo');
    preg_match('/^model name\s*:\s*(.+)$/m', $cpuinfo, $model);
    preg_match('/^MemTotal:\s*(\d+)/m', $meminfo, $mem);
    return [
        'nproc' => (int) trim((string) shell_exec('nproc')),
        'cpu_model' => $model[1] ?? 'unknown',
        'mem_total_gib' => round(($mem[1] ?? 0) / 1048576, 1),
        'kernel' => php_uname('r'),
        'php' => PHP_VERSION,
        'node' => trim((string) shell_exec('node --version 2>/dev/null')) ?: null,
    ];
}

function commit(): string
{
    $rev = trim((string) shell_exec('git rev-parse --short HEAD 2>/dev/null'));
    // Only changes to what is built and run count: others may be editing tests meanwhile.
    $paths = 'crates bench Cargo.toml Cargo.lock scripts/build.sh';
    // Tracked files only: a worktree may hold untracked symlinks (bench/peers/node_modules).
    $dirty = trim((string) shell_exec("git status --porcelain --untracked-files=no -- $paths 2>/dev/null")) !== '';
    return $rev === '' ? 'unknown' : $rev . ($dirty ? ' (with uncommitted changes)' : '');
}

// The version of an npm peer as installed in bench/peers.
function peerVersion(string $package): string
{
    $json = @file_get_contents(__DIR__ . "/peers/node_modules/$package/package.json");
    return $json === false ? '?' : (json_decode($json, true)['version'] ?? '?');
}

function serverName(array $r): string
{
    return match ($r['server_kind']) {
        'naive' => 'naive Rust',
        'soketi' => 'soketi ' . peerVersion('@soketi/soketi'),
        'les' => 'laravel-echo-server ' . peerVersion('laravel-echo-server'),
        'pusher.php' => $r['kind'] === 'idle' ? 'Surge, Pusher protocol' : 'Surge, Pusher HTTP API',
        'laravel.php' => 'Surge, Redis bridge',
        'echo.php' => match ([$r['kind'], $r['mode'] ?? '']) {
            ['echo', 'php_thread'] => 'Surge, worker_threads 0',
            ['echo', 'workers'] => 'Surge, worker_num 2',
            ['echo', ''] => 'Surge, PHP push',
            ['idle', 'deflate'] => 'Surge, permessage-deflate',
            default => 'Surge',
        },
        'fanout.php' => ['broadcast' => 'Surge, broadcast()', 'publish' => 'Surge, publish()', 'loop' => 'Surge, PHP foreach push'][$r['mode']]
            . (($r['worker_num'] ?? 1) > 1 ? ", worker_num {$r['worker_num']}" : ''),
    };
}

function isSurge(array $s): bool
{
    return str_ends_with($s['server_kind'], '.php');
}

function sizeName(int $n): string
{
    return $n % 1000 === 0 ? ($n / 1000) . 'k' : (string) $n;
}

// Surge and naive-server must exit 0 on SIGTERM; how an npm peer stops is none of our business
// (soketi closes every connection first and may be killed after 10 s; the JSON keeps it).
function endedWell(array $s): bool
{
    return $s['server_ended'] === 'exit 0' || (!isSurge($s) && $s['server_kind'] !== 'naive');
}

function summarise(array $r): array
{
    $r['server_kind'] ??= 'echo.php';
    $s = ['kind' => $r['kind'], 'server_kind' => $r['server_kind'], 'mode' => $r['mode'] ?? '', 'server' => serverName($r),
          // A repeated row (a round) is judged against the baselines of its own round.
          'group' => ['idle' => 'idle', 'echo' => 'echo', 'fanout' => 'fan-out', 'laravel' => 'Laravel'][$r['kind']] . ' ' . sizeName($r['conns'])
              . (empty($r['message_bytes']) ? '' : ', after ' . ($r['message_bytes'] / 1024) . ' KiB')
              . (isset($r['round']) ? " #{$r['round']}" : ''),
          'conns' => $r['conns'], 'loadavg_before' => $r['loadavg'], 'server_ended' => $r['server']['ended'] ?? null,
          'server_log_lines' => count($r['server']['log'] ?? [])];
    if (isset($r['failed'])) {
        return $s + ['connected' => 0, 'problems' => ["FAILED: {$r['failed']}"]];
    }
    $s += match ($r['kind']) {
        'echo' => echoFigures($r['clients'][0]) + ['rss_kib' => $r['server_rss_kib']],
        'idle' => idleFigures($r),
        'fanout', 'laravel' => deliveryFigures($r['clients'][0] ?? [], $r['server_rss_kib']),
    };
    $s['problems'] = problems($s);
    return $s;
}

function echoFigures(array $c): array
{
    $cpu = $c['server_cpu_secs_per_1k_round_trips'] ?? null;
    return [
        'connected' => $c['connected'],
        'secs' => $c['secs'],
        'round_trips' => $c['round_trips'],
        'rate' => $c['round_trips_per_sec'],
        'p50_us' => $c['p50_us'],
        'p99_us' => $c['p99_us'],
        'server_cpu_secs' => $c['server_cpu_secs'] ?? null,
        'cpu_us' => $cpu === null ? null : round($cpu * 1000, 2),
        // Of that, user space (the rest is the kernel's), per round trip; older runs lack it.
        'user_us' => isset($c['server_user_secs']) && $c['round_trips'] > 0 ? round($c['server_user_secs'] / $c['round_trips'] * 1e6, 2) : null,
        'client_user_us' => isset($c['client_user_secs']) && $c['round_trips'] > 0 ? round($c['client_user_secs'] / $c['round_trips'] * 1e6, 2) : null,
        'client_cpu_secs' => $c['client_cpu_secs'],
        'server_on_cpu_secs' => $c['server_on_cpu_secs'] ?? null,
        'server_runqueue_wait_secs' => $c['server_runqueue_wait_secs'] ?? null,
        'client_on_cpu_secs' => $c['client_on_cpu_secs'] ?? null,
        'client_runqueue_wait_secs' => $c['client_runqueue_wait_secs'] ?? null,
        'errors' => $c['errors'] + array_sum($c['connect_errors']),
    ];
}

function idleFigures(array $r): array
{
    $up = array_filter($r['clients'], fn($c) => ($c['event'] ?? '') === 'connected');
    $done = array_filter($r['clients'], fn($c) => ($c['event'] ?? '') === 'done');
    $connected = array_sum(array_column($up, 'connected'));
    $secs = max(array_column($up, 'connect_secs') ?: [0]);
    $grown = $r['server_rss_established_kib'] - $r['server_rss_listening_kib'];
    return [
        'client_processes' => $r['client_processes'],
        'connected' => $connected,
        'failed' => array_sum(array_column($up, 'failed')),
        'connect_secs' => $secs,
        'connects_per_sec' => $secs > 0 ? round($connected / $secs) : null,
        'server_rss_listening_kib' => $r['server_rss_listening_kib'],
        'server_rss_established_kib' => $r['server_rss_established_kib'],
        'server_rss_after_close_kib' => $r['server_rss_after_close_kib'],
        'kib_per_conn' => $connected > 0 ? round($grown / $connected, 2) : null,
        'server_fds_added' => $r['server_fds_established'] - $r['server_fds_listening'],
        'dropped_by_server' => array_sum(array_column($done, 'dropped_by_server')),
        'held_until_stopped' => array_sum(array_column($done, 'held')),
    ];
}

function deliveryFigures(array $c, int $rssAfter): array
{
    $one = $c['one'] ?? [];
    $sus = $c['sustained'] ?? [];
    $fix = $c['fixed_rate'] ?? [];
    return [
        'connected' => $c['connected'] ?? 0,
        'one_reps' => $one['reps'] ?? 0,
        'p50_us' => $one['last_p50_us'] ?? null,
        'p99_us' => $one['last_p99_us'] ?? null,
        'one_first_p50_us' => $one['first_p50_us'] ?? null,
        'one_error' => $one['error'] ?? null,
        'fixed_rate' => $fix['rate'] ?? null,
        'fixed_messages' => $fix['messages'] ?? null,
        'fixed_last_p50_us' => $fix['last_p50_us'] ?? null,
        'fixed_last_p99_us' => $fix['last_p99_us'] ?? null,
        'fixed_all_delivered' => $fix['all_delivered'] ?? null,
        'fixed_server_cpu_us_per_delivery' => $fix['server_cpu_us_per_delivery'] ?? null,
        'sustained_window' => $sus['window'] ?? null,
        'sustained_secs' => $sus['secs'] ?? null,
        'rate' => $sus['deliveries_per_sec'] ?? null,
        'sustained_all_delivered' => $sus['all_delivered'] ?? null,
        'sustained_batch_last_p99_us' => $sus['batch_last_p99_us'] ?? null,
        'cpu_us' => $sus['server_cpu_us_per_delivery'] ?? null,
        'rss_kib' => $sus['server_rss_kib_end'] ?? $rssAfter,
        'messages_sent' => $c['messages_sent'] ?? 0,
        'deliveries_received' => $c['deliveries_received'] ?? 0,
        'errors' => ($c['errors'] ?? 0) + array_sum($c['connect_errors'] ?? []),
    ];
}

// What went wrong in a row, in a few words each; none when every figure can be trusted.
function problems(array $s): array
{
    $p = [];
    if ($s['connected'] < $s['conns']) {
        $p[] = "connected {$s['connected']} of {$s['conns']}";
    }
    if (($s['errors'] ?? 0) > 0) {
        $p[] = "{$s['errors']} errors";
    }
    if (($s['dropped_by_server'] ?? 0) > 0) {
        $p[] = "{$s['dropped_by_server']} dropped";
    }
    if (($s['one_error'] ?? null) !== null) {
        $p[] = 'one msg: ' . $s['one_error'];
    }
    if (in_array($s['kind'], ['fanout', 'laravel'], true)) {
        if ($s['rate'] === null) {
            $p[] = 'no sustained run';
        } elseif ($s['sustained_all_delivered'] !== true) {
            $p[] = 'sustained: not all delivered';
        } elseif ($s['rate'] == 0) {
            $p[] = 'sustained: nothing delivered in the counted window';
        }
    }
    if (!endedWell($s)) {
        $p[] = "server {$s['server_ended']}";
    }
    if ($s['server_log_lines'] > 0) {
        $p[] = "{$s['server_log_lines']} log lines";
    }
    return $p;
}

function table(array $head, array $rows): string
{
    $w = array_map(fn($i) => max(array_map(fn($r) => strlen((string) $r[$i]), [$head, ...$rows])), array_keys($head));
    $line = fn($r) => '| ' . implode(' | ', array_map(fn($v, $i) => str_pad((string) $v, $w[$i], ' ', preg_match('/^-?[\d.,]+$/', (string) $v) ? STR_PAD_LEFT : STR_PAD_RIGHT), $r, array_keys($r))) . " |\n";
    return $line($head) . '|' . implode('|', array_map(fn($n) => str_repeat('-', $n + 2), $w)) . "|\n" . implode('', array_map($line, $rows));
}

function ms(?float $us): string
{
    return $us === null ? '-' : number_format($us / 1000, 2);
}

function mib(?float $kib): string
{
    return $kib === null ? '-' : number_format($kib / 1024, 1);
}

// Server memory: per connection for idle, RSS at the end otherwise.
function memory(array $s): string
{
    if ($s['kind'] === 'idle') {
        return isset($s['kib_per_conn']) ? number_format($s['kib_per_conn'], 2) . ' KiB/conn' : '-';
    }
    return isset($s['rss_kib']) ? mib($s['rss_kib']) . ' MiB' : '-';
}

// What a row shows besides the common columns.
function notes(array $s): string
{
    if (!isset($s['rss_kib']) && !isset($s['kib_per_conn'])) {
        return '';  // a failed row
    }
    return match ($s['kind']) {
        'idle' => sprintf('RSS %s -> %s MiB, %s after close; %s connects/s%s', mib($s['server_rss_listening_kib']),
            mib($s['server_rss_established_kib']), mib($s['server_rss_after_close_kib']), number_format((float) $s['connects_per_sec']),
            $s['client_processes'] > 1 ? " from {$s['client_processes']} client processes" : ''),
        'echo' => "client CPU {$s['client_cpu_secs']} of {$s['secs']} s" . userNote($s) . schedNote($s),
        'fanout' => sprintf('first client p50 %s ms; sustained batch last p99 %s ms', ms($s['one_first_p50_us']), ms($s['sustained_batch_last_p99_us'])),
        'laravel' => sprintf('%s msgs/s: last p50 %s ms, p99 %s ms, %s', $s['fixed_rate'] ?? '-', ms($s['fixed_last_p50_us']), ms($s['fixed_last_p99_us']),
            $s['fixed_all_delivered'] ? 'all delivered' : 'NOT all delivered'),
    };
}

// How much of an echo row's CPU per round trip was user space (the kernel's socket work is the
// rest, and much the same for every server): where the servers' own code differs.
function userNote(array $s): string
{
    if ($s['user_us'] === null || $s['client_user_us'] === null) {
        return '';
    }
    return sprintf('; user space per round trip: server %.2f us, client %.2f us', $s['user_us'], $s['client_user_us']);
}

// The scheduler's view of an echo row: how long server and client threads ran, and how long
// they were ready to run but waited for a core (on two shared cores, what decides the rate).
function schedNote(array $s): string
{
    if ($s['server_on_cpu_secs'] === null || $s['client_on_cpu_secs'] === null) {
        return '';
    }
    return sprintf('; on CPU / waiting for one: server %.2f / %.2f s, client %.2f / %.2f s', $s['server_on_cpu_secs'],
        $s['server_runqueue_wait_secs'], $s['client_on_cpu_secs'], $s['client_runqueue_wait_secs']);
}

// What the columns mean, for each kind of scenario in the run.
function legend(array $summary): array
{
    $window = fn($kind) => current(array_filter(array_column(array_filter($summary, fn($s) => $s['kind'] === $kind), 'sustained_window'))) ?: '?';
    $all = [
        'idle' => 'server memory = (RSS with every connection up - RSS listening) / connections; "after N KiB": each client first sent one message of N KiB and had it back',
        'echo' => 'p50/p99 of a round trip; rate = round trips/s; server CPU per round trip; memory = RSS at the end; notes: user-space CPU per round trip (/proc/PID/stat utime; the rest of the CPU column is kernel time), seconds on a CPU and waiting for one (runnable), summed over threads, from the scheduler (/proc/PID/task/*/schedstat) over the counted window',
        'fanout' => 'p50/p99 over 20 single 100-byte messages, trigger until the last client had it; rate = sustained deliveries/s '
            . "(closed loop, at most {$window('fanout')} messages ahead of the slowest client); server CPU per delivery; memory = RSS at the end",
        'laravel' => "as fan-out, timed from the PUBLISH to Redis, closed loop at most {$window('laravel')} messages ahead; notes: the fixed rate",
    ];
    return array_intersect_key($all, array_flip(array_column($summary, 'kind')));
}

$lines = file($resultsFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
$raw = array_map(fn($l) => json_decode($l, true, 512, JSON_THROW_ON_ERROR), $lines);
$summary = [];
foreach ($raw as $r) {
    $summary[$r['scenario']] = summarise($r);
}
$checks = checkTargets($summary);
$verdicts = roundVerdicts($checks, $summary);
$settings = json_decode($settingsJson, true, 512, JSON_THROW_ON_ERROR);
$machine = machine();
// When the report is written, at the end of the run; the run began $elapsed seconds before.
$date = gmdate('Y-m-d\TH:i:s\Z');
$started = gmdate('Y-m-d\TH:i:s\Z', time() - (int) $elapsed);
$peers = array_values(array_unique(array_column(array_filter($summary, fn($s) => !isSurge($s) && $s['server_kind'] !== 'naive'), 'server')));
// The raw lines again as objects, so that an empty {} stays {} in the file.
$rawObjects = array_map(fn($l) => json_decode($l, false, 512, JSON_THROW_ON_ERROR), $lines);
$report = ['date' => $date, 'started' => $started, 'commit' => commit(), 'machine' => $machine, 'command' => 'bench/run.sh', 'settings' => $settings,
           'peers' => $peers, 'elapsed_secs' => (int) $elapsed, 'summary' => $summary, 'targets' => $checks, 'over_the_rounds' => $verdicts, 'raw' => $rawObjects];

$load = $settings['loadavg_start'] ?? '?';
$busy = (float) $load > 0.5 ? ' (above 0.5: other work shared the cores; figures are noisier)' : '';
$out = "\nSurge benchmarks, $date (started $started), commit {$report['commit']}\n"
    . "{$machine['nproc']} CPUs ({$machine['cpu_model']}), {$machine['mem_total_gib']} GiB, Linux {$machine['kernel']}, PHP {$machine['php']}"
    . ($machine['node'] ? ", node {$machine['node']}" : '') . "\nload average at the start $load$busy\n\n";
$rows = [];
foreach ($summary as $id => $s) {
    $rows[] = [$s['group'], $s['server'], ms($s['p50_us'] ?? null), ms($s['p99_us'] ?? null),
        ($s['rate'] ?? null) === null ? '-' : number_format($s['rate']), ($s['cpu_us'] ?? null) === null ? '-' : number_format($s['cpu_us'], 2),
        memory($s),
        $s['problems'] ? implode('; ', $s['problems']) : 'ok', $s['loadavg_before'], notes($s),
        isSurge($s) ? targetCell($checks, $id) : 'baseline'];
}
$out .= table(['scenario', 'server', 'p50 ms', 'p99 ms', 'rate /s', 'server CPU us', 'server memory', 'health', 'load avg before', 'notes', 'against issue 8\'s targets'], $rows);
foreach (legend($summary) as $kind => $text) {
    $out .= "$kind: $text\n";
}
$out .= "targets: ratio = Surge / the baseline of the same scenario in this run; 'yes' when the bound holds and the Surge row is ok.\n\n";
if ($verdicts) {
    $out .= "Over the rounds: the median of the rounds' ratios (each Surge row against the baseline of its own round)\n\n";
    $out .= table(['scenario', 'server', 'target', 'median ratio', 'bound', 'rounds met', 'met?'], array_map(fn($v) => [
        $v['scenario'], $v['server'], FIGURES[$v['figure']] . " against {$v['against']}",
        $v['median_ratio'] === null ? '-' : number_format($v['median_ratio'], 2) . 'x', $v['bound'], "{$v['rounds_met']} of {$v['rounds']}",
        $v['met'] ? 'yes' : 'NO'], $verdicts)) . "\n";
}
foreach ($raw as $r) {
    foreach (array_slice($r['server']['log'] ?? [], 0, 10) as $l) {
        $out .= "server log ({$r['scenario']}): $l\n";
    }
    foreach ($r['clients'] ?? [] as $c) {
        foreach (['one', 'fixed_rate', 'sustained'] as $phase) {
            if (is_array($c[$phase] ?? null) && ($c[$phase]['error'] ?? null) !== null) {
                $out .= "client error ({$r['scenario']}, $phase): {$c[$phase]['error']}\n";
            }
        }
        foreach (['connect_errors' => 'connect error', 'error_messages' => 'error', 'drop_reasons' => 'closed by the server'] as $k => $what) {
            foreach ($c[$k] ?? [] as $msg => $n) {
                $out .= "client $what ({$r['scenario']}): $msg (x$n)\n";
            }
        }
    }
}
$json = json_encode($report, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n";
file_put_contents("$outDir/latest.json", $json);
file_put_contents("$outDir/" . str_replace(':', '', $date) . '.json', $json);
echo $out, "written: $outDir/latest.json ({$elapsed} s in all)\n";
