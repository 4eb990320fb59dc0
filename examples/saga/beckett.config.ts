/*
 * The payment saga: es worker --config examples/saga/beckett.config.ts --group Payments
 * Then place orders and pay some of them (see examples/saga/README.md).
 */
import { defineConfig } from 'beckett';
import { paymentSaga, sagaMessages } from './paymentSaga.js';

export default defineConfig({
  database: { schema: process.env.BECKETT_SCHEMA ?? 'example_saga' },
  messages: sagaMessages,
  groups: {
    Payments: {
      subscriptions: {
        PaymentSaga: {
          category: 'order',
          types: ['order_placed', 'payment_received', 'payment_timed_out'],
          handler: paymentSaga,
        },
      },
    },
  },
});
