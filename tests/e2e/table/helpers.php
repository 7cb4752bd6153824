<?php
// Helpers for the PHP side of tests/e2e/test_table.py, which runs code after requiring this.

/**
 * A created table of `$size` rows. The default schema is i INT, f FLOAT, s STRING(5);
 * `$columns` is name => [type, size].
 */
function table(int $size = 8, ?array $columns = null, float $conflict_proportion = 0.2): Surge\Table
{
    $columns ??= ['i' => [Surge\Table::TYPE_INT, 0], 'f' => [Surge\Table::TYPE_FLOAT, 0], 's' => [Surge\Table::TYPE_STRING, 5]];
    $t = new Surge\Table($size, $conflict_proportion);
    foreach ($columns as $name => [$type, $bytes]) {
        $t->column((string) $name, $type, $bytes);
    }
    $t->create();
    return $t;
}

/** The message of the Surge\Exception that `$f` throws; anything else fails the script. */
function refusal(callable $f): string
{
    try {
        $f();
    } catch (Surge\Exception $e) {
        return $e->getMessage();
    }
    throw new RuntimeException('expected a Surge\Exception, nothing was thrown');
}

/** [key, row] of every row, in iteration order. */
function rows(Surge\Table $t): array
{
    $out = [];
    foreach ($t as $key => $row) {
        $out[] = [$key, $row];
    }
    return $out;
}

/** One line of JSON for the Python side (floats keep their ".0"). */
function out(mixed $value): void
{
    echo json_encode($value, JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR), "\n";
}
