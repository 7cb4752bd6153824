<?php
/**
 * Surge\Table from PHP, side by side with a plain PHP array doing the same work in the same run.
 *
 *   ./scripts/build.sh && php -d extension=build/surge.so bench/table.php [rows] [ops] [int|string]
 *
 * Both sides hold `rows` rows (default 10,000) of three columns (id INT, score FLOAT,
 * name STRING(32)) under int keys, as a chat server keeps its users by fd (with `string`: under
 * keys 'user:N'), and run the same loops over the same random sequence of `ops` keys (default
 * 1,000,000). Each figure is the CPU time (user + system, getrusage) of one loop divided by
 * `ops`, best of 5 rounds: CPU time, because on a busy machine the wall clock also counts the
 * time other processes had the CPU. The loop itself is included on both sides, so "x array" is the honest ratio of
 * what a PHP script sees.
 *
 * `get` of a row that did not change since this process last read it returns the array it
 * returned then, as `$a[$k]` does (the table checks the row's version in shared memory on
 * every get); `incr, get` reads rows that did change, so get builds a new array each time.
 * The last lines time PHP itself building such an array, and a method call that does no
 * work (on this extension's class and on one of PHP's): the floor under every table method.
 *
 *   get        $t->get($k)                   vs  $a[$k]
 *   get field  $t->get($k, 'score')          vs  $a[$k]['score']
 *   exists     $t->exists($k)                vs  isset($a[$k])
 *   set        $t->set($k, [3 columns])      vs  $a[$k] = [3 columns]
 *   incr       $t->incr($k, 'id')            vs  $a[$k]['id']++
 *   incr, get  $t->incr($k, 'id'); $t->get($k)  vs  $a[$k]['id']++; $a[$k]
 */

if (!class_exists('Surge\Table')) {
    fwrite(STDERR, "load the extension: php -d extension=build/surge.so bench/table.php\n");
    exit(2);
}

$rows = (int) ($argv[1] ?? 10000);
$ops = (int) ($argv[2] ?? 1000000);
// Int keys (fds, ids), or string keys such as 'user:42'.
$kind = $argv[3] ?? 'int';
if (!in_array($kind, ['int', 'string'], true)) {
    fwrite(STDERR, "key kind must be int or string, not '$kind'\n");
    exit(2);
}
$strings = $kind === 'string';
$key = $strings ? fn(int $n) => "user:$n" : fn(int $n) => $n;
const ROUNDS = 5;

mt_srand(3);
$keys = [];
for ($i = 0; $i < $ops; $i++) {
    $keys[] = $key(mt_rand(1, $rows));
}

$table = new Surge\Table($rows);
$table->column('id', Surge\Table::TYPE_INT);
$table->column('score', Surge\Table::TYPE_FLOAT);
$table->column('name', Surge\Table::TYPE_STRING, 32);
$table->create();
$array = [];
for ($k = 1; $k <= $rows; $k++) {
    $row = ['id' => $k, 'score' => $k / 7, 'name' => "user number $k"];
    $table->set($key($k), $row);
    $array[$key($k)] = $row;
}

/** CPU time of this process so far (user + system), in nanoseconds. */
function cpu_ns(): int
{
    $u = getrusage();
    return ($u['ru_utime.tv_sec'] + $u['ru_stime.tv_sec']) * 1_000_000_000
        + ($u['ru_utime.tv_usec'] + $u['ru_stime.tv_usec']) * 1000;
}

/**
 * CPU nanoseconds per iteration of each loop, best of ROUNDS. The two loops take turns, so
 * that a busy moment of the machine does not fall on one side only.
 */
function best(callable $onTable, callable $onArray, array $keys): array
{
    $best = [INF, INF];
    for ($r = 0; $r < ROUNDS; $r++) {
        foreach ([$onTable, $onArray] as $i => $loop) {
            $t0 = cpu_ns();
            $loop($keys);
            $best[$i] = min($best[$i], (cpu_ns() - $t0) / count($keys));
        }
    }
    return $best;
}

$cases = [
    'get' => [
        function ($keys) use ($table) { foreach ($keys as $k) { $r = $table->get($k); } },
        function ($keys) use (&$array) { foreach ($keys as $k) { $r = $array[$k]; } },
    ],
    'get field' => [
        function ($keys) use ($table) { foreach ($keys as $k) { $v = $table->get($k, 'score'); } },
        function ($keys) use (&$array) { foreach ($keys as $k) { $v = $array[$k]['score']; } },
    ],
    'exists' => [
        function ($keys) use ($table) { foreach ($keys as $k) { $b = $table->exists($k); } },
        function ($keys) use (&$array) { foreach ($keys as $k) { $b = isset($array[$k]); } },
    ],
    'set' => [
        // A new array each time on both sides ($i is not a constant), as a real set has.
        function ($keys) use ($table) { $i = 0; foreach ($keys as $k) { $table->set($k, ['id' => $i++, 'score' => 0.5, 'name' => 'somebody']); } },
        function ($keys) use (&$array) { $i = 0; foreach ($keys as $k) { $array[$k] = ['id' => $i++, 'score' => 0.5, 'name' => 'somebody']; } },
    ],
    'incr' => [
        function ($keys) use ($table) { foreach ($keys as $k) { $table->incr($k, 'id'); } },
        function ($keys) use (&$array) { foreach ($keys as $k) { $array[$k]['id']++; } },
    ],
    'incr, get' => [
        function ($keys) use ($table) { foreach ($keys as $k) { $table->incr($k, 'id'); $r = $table->get($k); } },
        function ($keys) use (&$array) { foreach ($keys as $k) { $array[$k]['id']++; $r = $array[$k]; } },
    ],
];

// The same answers on both sides, or the comparison means nothing.
foreach ([1, intdiv($rows, 2), $rows] as $k) {
    if ($table->get($key($k)) !== $array[$key($k)]) {
        fwrite(STDERR, "table and array differ at key $k\n");
        exit(1);
    }
}

printf("Surge\\Table vs PHP array: %d rows of 3 columns, %d random %s keys, CPU time, best of %d (PHP %s)\n\n",
    $rows, $ops, $strings ? "string ('user:N')" : 'int', ROUNDS, PHP_VERSION);
printf("%-10s %16s %9s %16s %9s %9s\n", 'op', 'table ops/s', 'ns/op', 'array ops/s', 'ns/op', 'x array');
foreach ($cases as $name => [$onTable, $onArray]) {
    [$t, $a] = best($onTable, $onArray, $keys);
    printf("%-10s %16s %9.1f %16s %9.1f %9.2f\n", $name, number_format(1e9 / $t), $t, number_format(1e9 / $a), $a, $t / $a);
}

// For scale: what building a new array like the one get returns costs PHP itself (the same
// three columns, a new string included); get does that for a row that changed.
$name = 'user number ';
[$build] = best(function ($keys) use ($name) { foreach ($keys as $k) { $r = ['id' => $k, 'score' => 0.5, 'name' => $name . $k]; } }, fn($keys) => null, $keys);
printf("\nfor scale: PHP builds a new 3-column array like the one get returns in %.1f ns\n", $build);

// The floor under every method: a call that does no work, on this extension's class (made with
// ext-php-rs) and on a class of PHP's own (C), in the same loop.
$spl = new SplFixedArray(1);
[$extCall, $cCall] = best(
    function ($keys) use ($table) { foreach ($keys as $k) { $n = $table->getSize(); } },
    function ($keys) use ($spl) { foreach ($keys as $k) { $n = $spl->getSize(); } },
    $keys,
);
printf("for scale: a method call that does no work: \$table->getSize() %.1f ns, SplFixedArray::getSize() %.1f ns\n", $extCall, $cCall);
