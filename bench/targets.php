<?php
// Issue 8's targets, as checks of each Surge row of bench/run.sh against a bound, or against a
// baseline row of the same scenario (same kind, same size) in the same run. Used by report.php.

// Each: the kind of scenario; the Surge figure; the baseline server kind it is divided by (none:
// an absolute bound on the figure itself); the comparison and bound; optionally only at this many
// connections, or only for this Surge server (the one whose path matches the baseline's); and
// the target in issue 8's words.
const TARGETS = [
    ['kind' => 'idle', 'figure' => 'kib_per_conn', 'op' => '<=', 'bound' => 3.0, 'conns' => 19000,
     'text' => 'at most 3 KiB of server RSS per connection at 19k'],
    ['kind' => 'idle', 'figure' => 'kib_per_conn', 'against' => 'naive', 'op' => '<', 'bound' => 1.0, 'text' => 'idle memory below every peer'],
    ['kind' => 'idle', 'figure' => 'kib_per_conn', 'against' => 'soketi', 'op' => '<', 'bound' => 1.0, 'text' => 'idle memory below every peer'],
    ['kind' => 'idle', 'figure' => 'kib_per_conn', 'against' => 'les', 'op' => '<', 'bound' => 1.0, 'text' => 'idle memory below every peer'],
    ['kind' => 'echo', 'figure' => 'rate', 'against' => 'naive', 'op' => '>=', 'bound' => 0.9,
     'text' => "echo with a PHP callback at least 90% of the naive Rust server's rate"],
    ['kind' => 'echo', 'figure' => 'cpu_us', 'against' => 'naive', 'op' => '<', 'bound' => 1.0,
     'text' => 'echo: lower server CPU per message than the naive server'],
    // The naive server is triggered as fanout.php is; soketi and pusher.php through the Pusher
    // HTTP API (bench/peers/pusher-trigger.js): the pusher.php row is the like-for-like one.
    ['kind' => 'fanout', 'figure' => 'p50_us', 'against' => 'naive', 'op' => '<=', 'bound' => 1.1, 'server' => 'fanout.php',
     'text' => 'one-message fan-out within 1.1x of the naive Rust server'],
    ['kind' => 'fanout', 'figure' => 'p50_us', 'against' => 'soketi', 'op' => '<', 'bound' => 1.0,
     'text' => 'one-message fan-out faster than every peer'],
    ['kind' => 'fanout', 'figure' => 'rate', 'against' => 'soketi', 'op' => '>=', 'bound' => 2.0,
     'text' => "sustained fan-out at least 2x soketi's deliveries/s"],
    ['kind' => 'laravel', 'figure' => 'p50_us', 'against' => 'les', 'op' => '<', 'bound' => 1.0,
     'text' => 'one-message fan-out faster than every peer'],
    ['kind' => 'laravel', 'figure' => 'rate', 'against' => 'les', 'op' => '>=', 'bound' => 5.0,
     'text' => "Laravel path at least 5x laravel-echo-server's deliveries/s"],
];

// The short name of a figure in the table.
const FIGURES = ['kib_per_conn' => 'KiB/conn', 'rate' => 'rate', 'cpu_us' => 'CPU', 'p50_us' => 'p50'];

/**
 * Every check that this run can make: a Surge row and, for a ratio, its baseline row.
 * @param array<string, array> $summary rows by scenario id, as report.php summarises them
 */
function checkTargets(array $summary): array
{
    $checks = [];
    foreach ($summary as $id => $s) {
        if (!isSurge($s)) {
            continue;
        }
        foreach (TARGETS as $t) {
            ['figure' => $figure, 'op' => $op, 'bound' => $bound] = $t;
            $against = $t['against'] ?? null;
            $applies = $t['kind'] === $s['kind'] && ($t['conns'] ?? $s['conns']) === $s['conns']
                && ($t['server'] ?? $s['server_kind']) === $s['server_kind'];
            if (!$applies) {
                continue;
            }
            $base = null;
            foreach ($summary as $bid => $b) {
                if ($b['server_kind'] === $against && $b['group'] === $s['group']) {
                    $base = $bid;
                }
            }
            if ($against !== null && $base === null) {
                continue;
            }
            $value = $s[$figure] ?? null;
            $of = $base === null ? null : $summary[$base][$figure] ?? null;
            $exact = $value === null || !$of ? null : $value / $of;
            $ratio = $exact === null ? null : round($exact, 2);
            // An absolute bound holds Surge's own figure to it, a relative one the ratio (not
            // its rounded form: 1.101 is over 1.1).
            $x = $base === null ? $value : $exact;
            $holds = $x !== null && match ($op) { '<' => $x < $bound, '<=' => $x <= $bound, '>=' => $x >= $bound };
            $checks[] = ['target' => $t['text'], 'scenario' => $id, 'figure' => $figure, 'value' => $value, 'against' => $against,
                         'baseline' => $base, 'baseline_value' => $of, 'baseline_ok' => $base === null ? null : !$summary[$base]['problems'],
                         'ratio' => $ratio, 'bound' => "$op $bound",
                         // Unknown when there is no figure to compare (a failed row).
                         'met' => $x === null ? null : $holds && !$s['problems']];
        }
    }
    return $checks;
}

// The checks of one Surge row, as the table shows them.
function targetCell(array $checks, string $id): string
{
    $parts = [];
    foreach ($checks as $c) {
        if ($c['scenario'] !== $id) {
            continue;
        }
        $shown = $c['against'] === null ? $c['value'] : ($c['ratio'] === null ? '?' : "{$c['ratio']}x") . " {$c['against']}";
        $parts[] = sprintf('%s %s (%s) %s', FIGURES[$c['figure']], $shown ?? '-', $c['bound'], match ($c['met']) { true => 'yes', false => 'NO', null => 'n/a' });
    }
    return $parts ? implode('; ', $parts) : '-';
}

/**
 * Each target over the rounds of a repeated scenario (echo, and fan-out with BENCH_FANOUT_ROUNDS):
 * the median of the rounds' own ratios, and in how many rounds it held. One round moves with the
 * shared cores' load (naive's echo rate moved from 54k to 97k round trips/s between rounds on one
 * machine), and each round's ratio pairs rows a few seconds apart; the median of several rounds is
 * the verdict such noise does not flip. It holds when the median meets the bound and every
 * round's Surge row was ok. Fewer than 3 rounds give none.
 * @param array<string, array> $summary rows by scenario id, as report.php summarises them
 */
function roundVerdicts(array $checks, array $summary): array
{
    $rounds = [];
    foreach ($checks as $c) {
        $s = $summary[$c['scenario']];
        $scenario = preg_replace('/ #\d+$/', '', $s['group'], 1, $repeated);
        if ($repeated && $c['against'] !== null) {
            $rounds["$scenario|{$s['server']}|{$c['figure']}|{$c['against']}"][] = $c + ['of' => [$scenario, $s['server']]];
        }
    }
    $verdicts = [];
    foreach ($rounds as $cs) {
        if (count($cs) < 3) {
            continue;
        }
        $ratios = array_map(fn($c) => $c['value'] / $c['baseline_value'], array_filter($cs, fn($c) => $c['met'] !== null));
        sort($ratios);
        $n = count($ratios);
        $median = $n === 0 ? null : ($n % 2 ? $ratios[intdiv($n, 2)] : ($ratios[$n / 2 - 1] + $ratios[$n / 2]) / 2);
        [$op, $bound] = explode(' ', $cs[0]['bound']);
        $bound = (float) $bound;
        $holds = $median !== null && match ($op) { '<' => $median < $bound, '<=' => $median <= $bound, '>=' => $median >= $bound };
        $allOk = count(array_filter($cs, fn($c) => $c['met'] === null || !empty($summary[$c['scenario']]['problems']))) === 0;
        [$scenario, $server] = $cs[0]['of'];
        $verdicts[] = ['target' => $cs[0]['target'], 'scenario' => $scenario, 'server' => $server, 'figure' => $cs[0]['figure'],
                       'against' => $cs[0]['against'], 'bound' => $cs[0]['bound'], 'rounds' => count($cs),
                       'rounds_met' => count(array_filter($cs, fn($c) => $c['met'] === true)),
                       'median_ratio' => $median === null ? null : round($median, 3), 'met' => $holds && $allOk];
    }
    return $verdicts;
}
