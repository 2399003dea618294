#include "cbor.h"
