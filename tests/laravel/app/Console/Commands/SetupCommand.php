<?php

namespace App\Console\Commands;

use App\Models\User;
use Illuminate\Console\Command;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

/** Creates the SQLite schema and users with tokens: app:setup alice bob ... */
class SetupCommand extends Command
{
    protected $signature = 'app:setup {names*}';

    public function handle(): int
    {
        $path = config("database.connections.sqlite.database");
        is_file($path) || touch($path);
        Schema::dropIfExists('users');
        Schema::create('users', function (Blueprint $table) {
            $table->id();
            $table->string('name');
            $table->string('token')->unique();
        });
        foreach ($this->argument('names') as $name) {
            User::create(['name' => $name, 'token' => "token-{$name}"]);
        }
        $this->line('users: '.User::count());

        return 0;
    }
}
