<?php
// Summarises what bench/run.sh measured: prints the table and writes latest.json (and a dated
// copy) with the machine, the summary of every scenario and the raw measurements.
// Usage: php bench/report.php RESULTS.jsonl OUT_DIR ELAPSED_SECS

[, $resultsFile, $outDir, $elapsed] = $argv + [3 => 0];

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
    ];
}

function commit(): string
{
    $rev = trim((string) shell_exec('git rev-parse --short HEAD 2>/dev/null'));
    // Only changes to what is built and run count: others may be editing tests meanwhile.
    $paths = 'crates bench Cargo.toml Cargo.lock scripts/build.sh';
    $dirty = trim((string) shell_exec("git status --porcelain -- $paths 2>/dev/null")) !== '';
    return $rev === '' ? 'unknown' : $rev . ($dirty ? ' (with uncommitted changes)' : '');
}

function summarise(array $r): array
{
    $s = ['kind' => $r['kind'], 'server_kind' => $r['server_kind'] ?? 'echo.php', 'conns' => $r['conns'], 'loadavg_before' => $r['loadavg'],
          'server_ended' => $r['server']['ended'], 'server_log_lines' => count($r['server']['log'])];
    if ($r['kind'] === 'echo') {
        $c = $r['clients'][0];
        return $s + [
            'connected' => $c['connected'],
            'secs' => $c['secs'],
            'round_trips' => $c['round_trips'],
            'round_trips_per_sec' => $c['round_trips_per_sec'],
            'p50_us' => $c['p50_us'],
            'p99_us' => $c['p99_us'],
            'server_cpu_secs' => $c['server_cpu_secs'] ?? null,
            'server_cpu_secs_per_1k_round_trips' => $c['server_cpu_secs_per_1k_round_trips'] ?? null,
            'client_cpu_secs' => $c['client_cpu_secs'],
            'errors' => $c['errors'] + array_sum($c['connect_errors']),
            'server_rss_kib' => $r['server_rss_kib'],
        ];
    }
    if ($r['kind'] === 'fanout' || $r['kind'] === 'laravel') {
        $c = $r['clients'][0] ?? [];
        $one = $c['one'] ?? [];
        $sus = $c['sustained'] ?? [];
        $fix = $c['fixed_rate'] ?? [];
        return $s + [
            'connected' => $c['connected'] ?? 0,
            'one_reps' => $one['reps'] ?? 0,
            'one_last_p50_us' => $one['last_p50_us'] ?? null,
            'one_last_p99_us' => $one['last_p99_us'] ?? null,
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
            'deliveries_per_sec' => $sus['deliveries_per_sec'] ?? null,
            'sustained_all_delivered' => $sus['all_delivered'] ?? null,
            'sustained_batch_last_p99_us' => $sus['batch_last_p99_us'] ?? null,
            'server_cpu_us_per_delivery' => $sus['server_cpu_us_per_delivery'] ?? null,
            'server_rss_kib_end' => $sus['server_rss_kib_end'] ?? null,
            'messages_sent' => $c['messages_sent'] ?? 0,
            'deliveries_received' => $c['deliveries_received'] ?? 0,
            'errors' => ($c['errors'] ?? 0) + array_sum($c['connect_errors'] ?? []),
        ];
    }
    $up = array_filter($r['clients'], fn($c) => ($c['event'] ?? '') === 'connected');
    $done = array_filter($r['clients'], fn($c) => ($c['event'] ?? '') === 'done');
    $connected = array_sum(array_column($up, 'connected'));
    $secs = max(array_column($up, 'connect_secs') ?: [0]);
    $grown = $r['server_rss_established_kib'] - $r['server_rss_listening_kib'];
    return $s + [
        'client_processes' => $r['client_processes'],
        'connected' => $connected,
        'failed' => array_sum(array_column($up, 'failed')),
        'connect_secs' => $secs,
        'connects_per_sec' => $secs > 0 ? round($connected / $secs) : null,
        'server_rss_listening_kib' => $r['server_rss_listening_kib'],
        'server_rss_established_kib' => $r['server_rss_established_kib'],
        'server_rss_after_close_kib' => $r['server_rss_after_close_kib'],
        'server_kib_per_conn' => $connected > 0 ? round($grown / $connected, 2) : null,
        'server_fds_added' => $r['server_fds_established'] - $r['server_fds_listening'],
        'dropped_by_server' => array_sum(array_column($done, 'dropped_by_server')),
        'held_until_stopped' => array_sum(array_column($done, 'held')),
    ];
}

function table(array $head, array $rows): string
{
    $w = array_map(fn($i) => max(array_map(fn($r) => strlen((string) $r[$i]), [$head, ...$rows])), array_keys($head));
    $line = fn($r) => '| ' . implode(' | ', array_map(fn($v, $i) => str_pad((string) $v, $w[$i], ' ', preg_match('/^-?[\d.,]+$/', (string) $v) ? STR_PAD_LEFT : STR_PAD_RIGHT), $r, array_keys($r))) . " |\n";
    return $line($head) . '|' . implode('|', array_map(fn($n) => str_repeat('-', $n + 2), $w)) . "|\n" . implode('', array_map($line, $rows));
}

$raw = array_map(fn($l) => json_decode($l, true, 512, JSON_THROW_ON_ERROR), file($resultsFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES));
$summary = [];
foreach ($raw as $r) {
    $summary[$r['scenario']] = summarise($r);
}
$machine = machine();
$date = gmdate('Y-m-d\TH:i:s\Z');
// The raw lines again as objects, so that an empty {} stays {} in the file.
$rawObjects = array_map(fn($l) => json_decode($l, false, 512, JSON_THROW_ON_ERROR), file($resultsFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES));
$report = ['date' => $date, 'commit' => commit(), 'machine' => $machine, 'command' => 'bench/run.sh',
           'elapsed_secs' => (int) $elapsed, 'summary' => $summary, 'raw' => $rawObjects];

$ms = fn($us) => $us === null ? '-' : number_format($us / 1000, 2);
$mib = fn($kib) => number_format($kib / 1024, 1);
$out = "\nSurge benchmarks, $date, commit {$report['commit']}\n"
    . "{$machine['nproc']} CPUs ({$machine['cpu_model']}), {$machine['mem_total_gib']} GiB, Linux {$machine['kernel']}, PHP {$machine['php']}\n\n";
$echo = array_filter($summary, fn($s) => $s['kind'] === 'echo');
if ($echo) {
    $out .= table(
        ['echo', 'server', 'conns', 'round trips/s', 'p50 ms', 'p99 ms', 'server CPU s / 1k rt', 'client CPU s', 'errors', 'server', 'load avg before'],
        array_map(fn($n, $s) => [$n, $s['server_kind'] === 'naive' ? 'naive Rust' : 'Surge, PHP push', $s['connected'], number_format($s['round_trips_per_sec']), $ms($s['p50_us']), $ms($s['p99_us']),
            $s['server_cpu_secs_per_1k_round_trips'] ?? '-', "{$s['client_cpu_secs']} of {$s['secs']} s", $s['errors'],
            $s['server_ended'] . ($s['server_log_lines'] ? ", {$s['server_log_lines']} log lines" : ''), $s['loadavg_before']], array_keys($echo), $echo)
    ) . "\n";
}
$idle = array_filter($summary, fn($s) => $s['kind'] === 'idle');
if ($idle) {
    $out .= table(
        ['idle', 'connected', 'clients', 'connects/s', 'RSS listening MiB', 'RSS established MiB', 'KiB / conn', 'RSS after close MiB', 'dropped', 'server', 'load avg before'],
        array_map(fn($n, $s) => [$n, $s['connected'] . ($s['failed'] ? " ({$s['failed']} failed)" : ''), $s['client_processes'],
            number_format((float) $s['connects_per_sec']), $mib($s['server_rss_listening_kib']), $mib($s['server_rss_established_kib']),
            number_format((float) $s['server_kib_per_conn'], 2), $mib($s['server_rss_after_close_kib']), $s['dropped_by_server'],
            $s['server_ended'] . ($s['server_log_lines'] ? ", {$s['server_log_lines']} log lines" : ''), $s['loadavg_before']], array_keys($idle), $idle)
    ) . "\n";
}
$yes = fn($b) => $b === null ? '-' : ($b ? 'yes' : 'NO');
$num = fn($x, $d = 0) => $x === null ? '-' : number_format($x, $d);
$ended = fn($s) => $s['server_ended'] . ($s['server_log_lines'] ? ", {$s['server_log_lines']} log lines" : '');
$fan = array_filter($summary, fn($s) => $s['kind'] === 'fanout');
if ($fan) {
    $out .= table(
        ['fan-out, 100 B', 'server', 'clients', 'one msg: last p50 ms', 'p99 ms', 'first p50 ms', 'sustained deliveries/s', 'server CPU us / delivery', 'all delivered', 'batch last p99 ms', 'RSS MiB', 'errors', 'server', 'load avg before'],
        array_map(fn($n, $s) => [$n, $s['server_kind'] === 'naive' ? 'naive Rust' : 'Surge', $s['connected'], $ms($s['one_last_p50_us']), $ms($s['one_last_p99_us']),
            $ms($s['one_first_p50_us']), $num($s['deliveries_per_sec']), $num($s['server_cpu_us_per_delivery'], 2), $yes($s['sustained_all_delivered']),
            $ms($s['sustained_batch_last_p99_us']), $s['server_rss_kib_end'] === null ? '-' : $mib($s['server_rss_kib_end']), $s['errors'], $ended($s), $s['loadavg_before']], array_keys($fan), $fan)
    ) . "(one msg: 20 messages one at a time, HTTP trigger until the first/last client had it; sustained: closed loop, at most {$num(reset($fan)['sustained_window'])} messages ahead of the slowest client)\n\n";
}
$lar = array_filter($summary, fn($s) => $s['kind'] === 'laravel');
if ($lar) {
    $out .= table(
        ['Laravel path (Redis)', 'clients', 'one msg: last p50 ms', 'p99 ms', 'fixed rate msgs/s', 'last p50 ms', 'last p99 ms', 'all delivered', 'CPU us / delivery', 'sustained deliveries/s', 'CPU us / delivery ', 'all delivered ', 'errors', 'server', 'load avg before'],
        array_map(fn($n, $s) => [$n, $s['connected'], $ms($s['one_last_p50_us']), $ms($s['one_last_p99_us']), $num($s['fixed_rate']), $ms($s['fixed_last_p50_us']),
            $ms($s['fixed_last_p99_us']), $yes($s['fixed_all_delivered']), $num($s['fixed_server_cpu_us_per_delivery'], 2), $num($s['deliveries_per_sec']),
            $num($s['server_cpu_us_per_delivery'], 2), $yes($s['sustained_all_delivered']), $s['errors'], $ended($s), $s['loadavg_before']], array_keys($lar), $lar)
    ) . "(latency: from PUBLISH to Redis until the last client had the message; sustained: closed loop, at most {$num(reset($lar)['sustained_window'])} messages ahead)\n\n";
}
foreach ($raw as $r) {
    foreach (array_slice($r['server']['log'], 0, 10) as $l) {
        $out .= "server log ({$r['scenario']}): $l\n";
    }
    foreach ($r['clients'] as $c) {
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
