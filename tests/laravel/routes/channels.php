<?php

use App\Models\User;
use Illuminate\Support\Facades\Broadcast;

// private-orders.{userId}: only that user.
Broadcast::channel('orders.{userId}', fn (User $user, $userId) => (int) $user->id === (int) $userId);
// private-staff: any user of the admin guard (the handler's users are the web guard's).
Broadcast::channel('staff', fn ($user) => true, ['guards' => ['admin']]);
