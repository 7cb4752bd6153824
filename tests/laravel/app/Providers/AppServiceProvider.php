<?php

namespace App\Providers;

use Illuminate\Support\ServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    public function register(): void
    {
        // Per request, as Laravel documents scoped(): the tests check it is fresh per callback.
        $this->app->scoped('surge.scoped', fn () => new \ArrayObject());
    }

    public function boot(): void
    {
        require base_path('routes/channels.php');
        \Illuminate\Support\Facades\Auth::viaRequest('query-token', fn ($request) => \App\Models\User::where('token', $request->query('token'))->first());
    }
}
