// beckett's config, found by es from the working directory up (or given with --config PATH).
// Next steps:
//   npx es migrate                      create the tables (embedded PostgreSQL when no DATABASE_URL)
//   npx es worker --group Greetings     run the subscription below
//   npx es append person-ada person_arrived '{"name":"Ada"}'
//   npx es tail greeting                watch the handler's output
import { defineConfig, message } from 'beckett';
import { type Greeted, greet, type PersonArrived } from './handlers/greet.js';

export default defineConfig({
  // The URL comes from --database-url or DATABASE_URL when set, else from here, else es starts an
  // embedded PostgreSQL with its data in .beckett/.
  database: { schema: 'beckett' },
  messages: {
    person_arrived: message<PersonArrived>(),
    greeted: message<Greeted>(),
  },
  groups: {
    Greetings: {
      subscriptions: {
        greet: {
          category: 'person',
          types: ['person_arrived'],
          handler: (msg, ctx) => (msg.type === 'person_arrived' ? greet(msg, ctx) : undefined),
        },
      },
    },
  },
  // Keep the log small: es retention apply (add --dry-run to see what it would delete first).
  retention: {
    policies: [{ category: 'greeting', maxAge: '90d' }],
  },
});
