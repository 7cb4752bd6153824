<?php

// A minimal Laravel 8 application built from Debian's packages (php-laravel-framework,
// php-predis, php-redis): no Composer, no vendor/. Debian's autoloaders live in /usr/share/php;
// this app's classes and the Surge package are autoloaded below.

require_once 'Illuminate/autoload.php';

$psr4 = [
    'App\\' => __DIR__.'/../app/',
    'Surge\\Laravel\\' => __DIR__.'/../../../php/laravel/src/',
];
spl_autoload_register(function (string $class) use ($psr4) {
    foreach ($psr4 as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir.str_replace('\\', '/', substr($class, strlen($prefix))).'.php';
            if (is_file($file)) {
                require $file;
            }
        }
    }
});

// Everything the app writes goes outside the repository: APP_STORAGE (the tests give each
// run its own), else a directory under the system temp dir.
$storage = getenv('APP_STORAGE') ?: sys_get_temp_dir().'/surge-laravel-app';
foreach (['', '/framework/cache/data', '/logs', '/app', '/bootstrap'] as $dir) {
    is_dir($storage.$dir) || mkdir($storage.$dir, 0777, true);
}
foreach (['SERVICES', 'PACKAGES', 'CONFIG', 'ROUTES', 'EVENTS'] as $cache) {
    if (getenv("APP_{$cache}_CACHE") === false) {
        $_ENV["APP_{$cache}_CACHE"] = $_SERVER["APP_{$cache}_CACHE"] = $storage.'/bootstrap/'.strtolower($cache).'.php';
    }
}

$app = new Illuminate\Foundation\Application(dirname(__DIR__));
$app->useStoragePath($storage);

$app->singleton(Illuminate\Contracts\Http\Kernel::class, Illuminate\Foundation\Http\Kernel::class);
$app->singleton(Illuminate\Contracts\Console\Kernel::class, App\Console\Kernel::class);
$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, App\Exceptions\Handler::class);

return $app;
