<?php

use App\Models\User;
use Illuminate\Support\Facades\Broadcast;

// private-orders.{userId}: only that user.
Broadcast::channel('orders.{userId}', fn (User $user, $userId) => (int) $user->id === (int) $userId);
