<?php

namespace Surge\Laravel;

use Illuminate\Support\ServiceProvider;
use Surge\Laravel\Console\MakeHandlerCommand;
use Surge\Laravel\Console\ReloadCommand;
use Surge\Laravel\Console\ServeCommand;

class SurgeServiceProvider extends ServiceProvider
{
    public function register(): void
    {
        $this->mergeConfigFrom(__DIR__.'/../config/surge.php', 'surge');
    }

    public function boot(): void
    {
        if ($this->app->runningInConsole()) {
            $this->publishes([__DIR__.'/../config/surge.php' => $this->app->configPath('surge.php')], 'surge-config');
            $this->commands([ServeCommand::class, ReloadCommand::class, MakeHandlerCommand::class]);
        }
    }
}
