<?php
// Prints, as JSON, what Reflection sees of Surge's API: every class under Surge\ with its
// parent, interfaces, own methods, own properties and constants, plus the global constants.
//
//   php -n stub_reflect.php stub path/to/surge.stub.php   (the stub, without the extension)
//   php -n -d extension=libsurge.so stub_reflect.php ext  (the loaded extension)
//
// The same code describes both sides, so tests/e2e/test_stubs.py can compare them.

function type_name(?ReflectionType $t): ?string
{
    return $t === null ? null : (string) $t;
}

function describe_param(ReflectionParameter $p): array
{
    $default = null;
    if ($p->isDefaultValueAvailable()) {
        try {
            $default = var_export($p->getDefaultValue(), true);
        } catch (Throwable $e) {
            $default = '?';
        }
    }
    return [
        'name' => $p->getName(),
        'type' => type_name($p->getType()),
        'optional' => $p->isOptional(),
        'variadic' => $p->isVariadic(),
        'by_ref' => $p->isPassedByReference(),
        'default' => $default,
    ];
}

function visibility(ReflectionMethod|ReflectionProperty|ReflectionClassConstant $m): string
{
    return $m->isPublic() ? 'public' : ($m->isProtected() ? 'protected' : 'private');
}

/** The members that `$class` itself declares, not those it inherits. */
function declared_in(string $class, array $members): array
{
    return array_filter($members, fn($m) => $m->getDeclaringClass()->getName() === $class);
}

function describe_class(ReflectionClass $c): array
{
    $name = $c->getName();
    $methods = [];
    foreach (declared_in($name, $c->getMethods()) as $m) {
        $methods[$m->getName()] = [
            'visibility' => visibility($m),
            'static' => $m->isStatic(),
            'final' => $m->isFinal(),
            'abstract' => $m->isAbstract(),
            'return' => type_name($m->getReturnType() ?? $m->getTentativeReturnType()),
            'params' => array_map('describe_param', $m->getParameters()),
            'doc' => $m->getDocComment() !== false,
        ];
    }
    $properties = [];
    foreach (declared_in($name, $c->getProperties()) as $p) {
        $properties[$p->getName()] = [
            'visibility' => visibility($p),
            'static' => $p->isStatic(),
            'type' => type_name($p->getType()),
            'readonly' => $p->isReadOnly(),
            'doc' => $p->getDocComment() !== false,
        ];
    }
    $constants = [];
    foreach (declared_in($name, $c->getReflectionConstants()) as $k) {
        $constants[$k->getName()] = [
            'value' => var_export($k->getValue(), true),
            'doc' => $k->getDocComment() !== false,
        ];
    }
    $interfaces = $c->getInterfaceNames();
    sort($interfaces);
    return [
        'kind' => $c->isInterface() ? 'interface' : ($c->isTrait() ? 'trait' : ($c->isEnum() ? 'enum' : 'class')),
        'final' => $c->isFinal(),
        'abstract' => $c->isAbstract() && !$c->isInterface(),
        'parent' => $c->getParentClass() ? $c->getParentClass()->getName() : null,
        'interfaces' => $interfaces,
        'doc' => $c->getDocComment() !== false,
        // Objects even when empty, so that JSON gives maps, never [].
        'methods' => (object) $methods,
        'properties' => (object) $properties,
        'constants' => (object) $constants,
    ];
}

/** Every class, interface, trait and enum named Surge\..., internal or user-defined. */
function surge_classes(bool $internal): array
{
    $names = [];
    foreach ([get_declared_classes(), get_declared_interfaces(), get_declared_traits()] as $list) {
        foreach ($list as $n) {
            if (str_starts_with($n, 'Surge\\') && (new ReflectionClass($n))->isInternal() === $internal) {
                $names[] = $n;
            }
        }
    }
    return $names;
}

$side = $argv[1] ?? '';
if ($side === 'stub') {
    if (extension_loaded('surge')) {
        fwrite(STDERR, "run the stub side without the extension (php -n)\n");
        exit(2);
    }
    require $argv[2];
    $names = surge_classes(false);
    $constants = get_defined_constants(true)['user'] ?? [];
} elseif ($side === 'ext') {
    if (!extension_loaded('surge')) {
        fwrite(STDERR, "the surge extension is not loaded\n");
        exit(2);
    }
    $ext = new ReflectionExtension('surge');
    // Surge\Exception is registered by hand in MINIT and may not be listed by getClasses().
    $names = array_merge(array_keys($ext->getClasses()), surge_classes(true), ['Surge\\Exception']);
    $constants = $ext->getConstants();
} else {
    fwrite(STDERR, "usage: stub_reflect.php stub FILE | ext\n");
    exit(2);
}

$classes = [];
foreach (array_unique($names) as $n) {
    if (class_exists($n) || interface_exists($n) || trait_exists($n)) {
        $c = new ReflectionClass($n);
        $classes[$c->getName()] = describe_class($c);
    }
}
ksort($classes);
$consts = [];
foreach ($constants as $k => $v) {
    $consts[$k] = var_export($v, true);
}
ksort($consts);
echo json_encode(['classes' => (object) $classes, 'constants' => (object) $consts], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
