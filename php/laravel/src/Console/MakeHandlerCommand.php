<?php

namespace Surge\Laravel\Console;

use Illuminate\Console\GeneratorCommand;

/** php artisan make:surge-handler ChatHandler  ->  app/WebSocket/ChatHandler.php */
class MakeHandlerCommand extends GeneratorCommand
{
    protected $name = 'make:surge-handler';

    protected $description = 'Create a Surge WebSocket handler class';

    protected $type = 'Surge handler';

    protected function getStub()
    {
        return __DIR__.'/../../stubs/handler.stub';
    }

    protected function getDefaultNamespace($rootNamespace)
    {
        return $rootNamespace.'\WebSocket';
    }

    public function handle()
    {
        $result = parent::handle();
        if ($result !== false) {
            $class = $this->qualifyClass($this->getNameInput());
            $this->line("Use it: SURGE_HANDLER=\"{$class}\" in .env (or 'handler' in config/surge.php), then php artisan surge:serve");
        }

        return $result;
    }
}
