<?php

namespace App\Facades;

use Illuminate\Support\Facades\Facade;

/** The scoped `surge.scoped` service, reached as apps reach theirs: through a facade. */
class Scoped extends Facade
{
    protected static function getFacadeAccessor(): string
    {
        return 'surge.scoped';
    }
}
